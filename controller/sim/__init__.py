"""Simulators used by the end-to-end tests, the demo and the benchmarks.

- `controller.sim.bigip`: `BigIPEmulator`, an in-process BIG-IP iControl REST server (HTTPS, tokens, faults).
- `controller.sim.dataplane`: LTM member selection models (pure, usable in virtual time).
- `controller.sim.tls`: a throwaway self-signed certificate for the HTTPS servers.

Nothing is imported here so that `python -m controller.sim.bigip` runs cleanly and importing one
simulator never pulls in the others.
"""
