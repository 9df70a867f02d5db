//! The checkout web page at `/` (to be built).

use std::sync::Arc;

use super::Shared;

pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
}
