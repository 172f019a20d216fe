"""Local stand-ins for vendor APIs: aiohttp servers on 127.0.0.1 that speak the vendors' wire formats."""
