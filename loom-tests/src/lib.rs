//! Loom models: see the tests/ folder. Built with `--cfg shmsem_loom`.
