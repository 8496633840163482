"""Interoperability: export medgen models in formats that other libraries load without medgen."""
