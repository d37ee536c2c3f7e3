//! Test fakes that are real implementations of the ports (behind the `testing` feature).
