//! The decision engine: what a request meets on its way through, callback by callback.
//! (Interface first; bodies land with the controls.)

use crate::decision::{ApiId, Event, HeaderChange, Outcome, Control, Verdict};
use crate::host::{Clock, CounterStore};
use crate::request::{Request, Response};
use crate::Policy;

/// What the engine remembers about one stream between its callbacks.
#[derive(Debug, Default)]
pub struct Stream {
    events: Vec<Event>,
}

/// The one decision published for a stream: the most significant thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The API the request was routed to.
    pub api: Option<ApiId>,
    /// The control behind the outcome; `None` when nothing fired.
    pub control: Option<Control>,
    /// What the request experienced.
    pub outcome: Outcome,
}

impl Stream {
    /// Takes the events raised since the last call, leaving none behind.
    pub fn take_events(&mut self) -> Vec<Event> { std::mem::take(&mut self.events) }
    /// The decision to publish.
    pub fn decision(&self) -> Decision { todo!() }
    /// Whether [`Policy::on_response`] has anything to do for this stream.
    pub fn wants_response(&self) -> bool { todo!() }
    /// How many body bytes to buffer before calling [`Policy::on_request_body`].
    pub fn body_limit(&self) -> usize { todo!() }
}

impl Policy {
    /// Decides on the request headers.
    pub fn on_request(&self, _req: &Request<'_>, _clock: &dyn Clock, _store: &dyn CounterStore) -> (Stream, Verdict) { todo!() }
    /// Decides on the buffered body; `complete` is false when the body was longer than
    /// [`Stream::body_limit`] and `body` holds only its first bytes.
    pub fn on_request_body(&self, _stream: &mut Stream, _body: &[u8], _complete: bool, _clock: &dyn Clock, _store: &dyn CounterStore) -> Verdict { todo!() }
    /// Counts the response and returns the header changes to make.
    pub fn on_response(&self, _stream: &mut Stream, _resp: &Response<'_>, _clock: &dyn Clock, _store: &dyn CounterStore) -> Vec<HeaderChange> { todo!() }
}
