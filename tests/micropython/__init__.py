"""Tests and helpers that run code under the real MicroPython 1.27 (WebAssembly port on Node.js)."""
