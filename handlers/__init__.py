"""The Slack glue: one module per surface, each with register(app)."""
