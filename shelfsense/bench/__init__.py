"""The offline benchmark (shelfsense bench): recorded footage through four caching modes."""
