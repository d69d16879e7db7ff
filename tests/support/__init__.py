"""Test support: a real Mosquitto per test, a black-holing TCP proxy, test certificates."""
