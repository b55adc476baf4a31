"""The router: where a request goes (deployments, key pools, cooldowns), its attempts, and relaying the answer."""
