//! The axum application of `examples/axum_app.rs`, in a file of its own so
//! that the benchmarks serve the very same router (`bench/axum_tokio.rs` on
//! tokio, `bench/async_conns.rs` on an in-memory worker): each includes it
//! with `#[path = ...] mod axum_router;`.
//!
//! - `GET /` answers `hello from shardnet` (19 bytes, `text/plain;
//!   charset=utf-8`);
//! - `GET /users/{id}` answers the JSON `{"id": <id>}`;
//! - `POST /echo` answers with the request body.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};

/// The body of `GET /`.
pub const HELLO: &str = "hello from shardnet";

/// The application. Build it once and clone it per connection (a clone
/// shares the routes).
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { HELLO }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { Json(serde_json::json!({ "id": id })) }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
}
