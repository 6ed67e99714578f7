//! Sockets for code outside the workers.
//!
//! [`blocking`]: `std::net`-like [`TcpListener`](blocking::TcpListener),
//! [`TcpStream`](blocking::TcpStream) and [`UdpSocket`](blocking::UdpSocket)
//! for ordinary threads of a program that runs a
//! [`Runtime`](crate::Runtime), each backed by tasks on the workers.

pub mod blocking;
