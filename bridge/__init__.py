"""oicp-bridge: publish OCPI EVSE status to Hubject over OICP."""
