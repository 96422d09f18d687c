"""The latent explorer (``glowflow serve``): the model side, the web app, framing a user's
photo, and the static page."""
