//! AF_PACKET (in progress).
