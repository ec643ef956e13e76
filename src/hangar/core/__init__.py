"""The domain core: state, rules and services shared by every face. Knows no web framework."""
