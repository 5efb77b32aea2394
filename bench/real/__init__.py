"""Real engines behind a real load balancer: llama.cpp servers behind HAProxy, the real controller
between them (`python -m bench.real`; docs/real-engines.md)."""
