//! Runnable examples of Sealpost; see `examples/`. This library is empty on purpose.
