"""REST and websocket routers."""
