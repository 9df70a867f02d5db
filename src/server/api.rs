//! The HTTP API under `/api/v1/`, with `/health` and `/metrics` (to be built).

use std::sync::Arc;

use super::Shared;

pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
}
