//! The gRPC face of [`Counting`]: `envoy.service.ratelimit.v3.RateLimitService` as a tower
//! service tonic's server runs over h2c, written out by hand in place of what
//! `tonic-build` would generate (that needs `protoc`). One route, the `ShouldRateLimit`
//! unary call with prost's codec; any other path answers gRPC `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::sync::Arc;

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::counting::{Counting, Refusal};
use crate::rls::{self, RateLimitRequest, RateLimitResponse};

/// The rate limit service, cheap to clone (tonic clones it per connection).
#[derive(Clone)]
pub struct RateLimitService {
    counting: Arc<Counting>,
}

impl RateLimitService {
    pub fn new(counting: Counting) -> Self {
        Self {
            counting: Arc::new(counting),
        }
    }
}

impl NamedService for RateLimitService {
    const NAME: &'static str = rls::SERVICE;
}

/// The one method, as tonic's unary plumbing wants it.
struct ShouldRateLimit(Arc<Counting>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let counting = Arc::clone(&self.0);
        Box::pin(async move {
            match counting.should_rate_limit(request.get_ref()).await {
                Ok(response) => Ok(Response::new(response)),
                Err(Ok(Refusal::Invalid(message))) => Err(Status::invalid_argument(message)),
                Err(Ok(Refusal::TooManyLimits)) => Err(Status::resource_exhausted(format!(
                    "more than {} distinct request-carried limits",
                    crate::counting::MAX_REQUEST_LIMITS
                ))),
                // UNAVAILABLE, not UNKNOWN: a proxy then applies its failure mode.
                Err(Err(message)) => {
                    eprintln!("ratelimit-peer: {message}");
                    Err(Status::unavailable(message))
                }
            }
        })
    }
}

impl<B> Service<http::Request<B>> for RateLimitService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != rls::SHOULD_RATE_LIMIT {
            let path = request.uri().path().to_owned();
            return Box::pin(async move {
                Ok(
                    Status::unimplemented(format!("{path}: this peer serves only ShouldRateLimit"))
                        .into_http(),
                )
            });
        }
        let method = ShouldRateLimit(Arc::clone(&self.counting));
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<RateLimitResponse, RateLimitRequest>::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}
