"""Test peers and helpers shared across the test suite."""
