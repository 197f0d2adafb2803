"""enofctl: turn a trained ANN into an accurate, low-activity spiking neural network."""

__version__ = "0.2.0"
