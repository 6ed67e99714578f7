//! Sockets for code outside the workers.
//!
//! [`blocking`]: `std::net`-like [`TcpListener`](blocking::TcpListener) and
//! [`TcpStream`](blocking::TcpStream) for ordinary threads of a program
//! that runs a [`Runtime`](crate::Runtime), each backed by a task on the
//! worker that owns its flow.

pub mod blocking;
