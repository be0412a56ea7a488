//! `GET /api/v1/cdrs`: call detail records with time, number, Call-ID, direction and status
//! filters and offset paging, from PostgreSQL when `[cdr] postgres` is set, else from the
//! JSON-lines files (`crate::cdr::query`).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};

use super::{
    AdminState,
    error::{ApiError, ApiQuery},
};
use crate::cdr::{CdrQuery, Page, lookup};

/// `GET /api/v1/cdrs?since=&until=&number=&call_id=&direction=&status=&offset=&limit=`
pub async fn list_cdrs(
    State(s): State<Arc<AdminState>>,
    ApiQuery(q): ApiQuery<CdrQuery>,
) -> Result<Json<Page>, ApiError> {
    let filter = q
        .check(s.cdr.max_page)
        .map_err(|e| ApiError::bad_request(format!("`{}` {}", e.key, e.reason)))?;
    lookup(&s.cdr, filter).await.map(Json).map_err(|e| match e {
        crate::cdr::LookupError::Disabled => ApiError::not_found(e.to_string()),
        crate::cdr::LookupError::Postgres(p) => {
            tracing::warn!(error = %p, "CDR query failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the CDR database is unavailable",
            )
        }
    })
}
