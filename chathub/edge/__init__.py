"""The edge: everything that decides a request before it reaches the hub (HTTP routes,
admission, tokens, proxies, moderation)."""
