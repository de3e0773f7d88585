"""Development and test tooling: private Redis servers, the `make run` launcher."""
