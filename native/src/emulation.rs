//! `POST <emulation prefix>`: a bidirectional emulation client's later commands, for the
//! session named in the body (its stream is opened like any other, see `stream.rs`).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use shared::http::{Answer, EmulationCall};

use crate::engine::{Engine, Event};
use crate::http::{answer, empty, read_body, Body};

/// `{node, session, data}`; 204 once handed to the session.
pub async fn emulation(req: Request<Incoming>, engine: &Engine, call: EmulationCall) -> Response<Body> {
    let body = match read_body(req, call.body, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = match call.decode(&body) {
        Ok(r) => r,
        Err(a) => return answer(a),
    };
    if request.node != *engine.node_id {
        return answer(Answer::unknown_node());
    }
    // Waits while the engine is behind: this connection's next request waits with it.
    engine.send(Event::Emulation { token: request.session, data: request.data }).await;
    empty(StatusCode::NO_CONTENT)
}
