"""One package per area of the app, each with a thin views module."""
