"""The embedded demo corpus (make_demo_data.py): synthetic CREMA-D-shaped voices, not part of the toolkit proper."""
