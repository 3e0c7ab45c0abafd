"""slicelab: a control framework for shared, virtualized network testbeds."""

__version__ = "0.1.0"
