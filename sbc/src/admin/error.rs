//! JSON errors of the admin API, and extractors that turn every malformed request into a 4xx
//! with a JSON body (axum's own rejections answer in plain text).

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Path, Query, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// One precise problem with a requested change.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemJson {
    /// Dotted key path (`media.port_min`, `trunk[0].proxy`); empty when not tied to a key.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// An API error: an HTTP status and a JSON body `{"error": ..., "problems": [...]}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable summary.
    pub error: String,
    /// Per-key problems (422 on a refused change).
    pub problems: Vec<ProblemJson>,
}

impl ApiError {
    /// An error without per-key problems.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            problems: Vec::new(),
        }
    }

    /// 404 for a missing resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 400 for a malformed request.
    pub fn bad_request(what: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, what)
    }

    /// 422: the change is well-formed but invalid; nothing was changed.
    pub fn invalid(problems: Vec<ProblemJson>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!(
                "configuration refused ({} problem(s)); nothing was changed",
                problems.len()
            ),
            problems,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [ProblemJson],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.error,
            problems: &self.problems,
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections are JSON errors: 400 for malformed JSON, 415 without a JSON
/// content type, 413 for a body over the limit, 422 for wrong types or unknown fields.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// `Path<T>` whose rejections (bad percent-encoding, invalid UTF-8) are JSON errors.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// `Query<T>` whose rejections are JSON errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// The fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource; see /api/v1/openapi.json")
}

/// The answer to a known path with a method it does not have.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource; see /api/v1/openapi.json",
    )
}
