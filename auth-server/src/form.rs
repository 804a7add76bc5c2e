//! The body of a token or revocation request: an `application/x-www-form-urlencoded` form.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};

use crate::error::OAuthError;
use crate::params::{Params, has_content_type};

/// The parameters of a form-encoded OAuth request. A body that cannot be read keeps axum's
/// answer (413 beyond the size limit); another content type is `invalid_request`.
pub struct OAuthForm(pub Params);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = has_content_type(request.headers(), "application/x-www-form-urlencoded");
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !is_form {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            )
            .into_response());
        }
        Ok(OAuthForm(Params::parse(&body)))
    }
}
