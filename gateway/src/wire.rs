//! Refusals of request bytes that tonic makes before a service sees them.
//!
//! tonic answers a malformed protobuf message, a frame with a bad compressed
//! flag, a truncated frame or an empty request with `INTERNAL`, and with no
//! machine-readable reason. Those are the client's mistakes, so the node
//! answers them as such: [`client_input_status`] turns tonic's status into a
//! precise code with an ErrorInfo reason, and [`tag_refusal`] (a response map
//! around every service) applies it to each trailers-only answer that carries
//! no reason of ours. Every status a service of ours returns carries a reason,
//! real faults included (`INTERNAL_ERROR`, see [`crate::convert::internal`]), so
//! an answer without one was written by tonic's request decoding (or routing),
//! never by a fault of the node. Submission streams apply the same mapping to
//! the error their request stream yields, then end (`services::stream`).
//!
//! One framing error tonic does not see: a request that ends right after a
//! frame's 5-byte header (or inside it, on a stream) reads to tonic as a clean
//! end. [`check_framing`] wraps every request body in a [`FramingCheck`] that
//! follows the frame boundaries and makes such an end a `TRUNCATED_MESSAGE`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http;
use tonic::{Code, Status};

use crate::convert::{coded_status, REASON_METADATA};

/// The precise answer to a status that tonic produced while reading a request.
pub fn client_input_status(st: &Status) -> Status {
    if st.metadata().contains_key(REASON_METADATA) {
        // Already ours (e.g. from [`FramingCheck`]).
        return st.clone();
    }
    let msg = st.message();
    let (code, reason) = match st.code() {
        Code::Internal => (Code::InvalidArgument, internal_reason(msg)),
        // tonic says OUT_OF_RANGE for a frame longer than the limit; gRPC's
        // status guide says RESOURCE_EXHAUSTED for a request over the limit.
        Code::OutOfRange | Code::ResourceExhausted
            if msg.contains("message length too large") || msg.contains("size limit") =>
        {
            (Code::ResourceExhausted, "MESSAGE_TOO_LARGE")
        }
        Code::Unimplemented if msg.contains("compressed with") => (Code::Unimplemented, "UNSUPPORTED_ENCODING"),
        Code::Unimplemented => (Code::Unimplemented, "UNKNOWN_METHOD"),
        other => (other, fallback_reason(other)),
    };
    coded_status(code, reason, msg)
}

/// Which of tonic's decoding failures an `INTERNAL` is.
fn internal_reason(msg: &str) -> &'static str {
    if msg.starts_with("failed to decode Protobuf message") {
        "MALFORMED_MESSAGE"
    } else if msg.contains("compressed-flag but no grpc-encoding") {
        "COMPRESSED_WITHOUT_ENCODING"
    } else if msg.contains("invalid compression flag") {
        "INVALID_COMPRESSION_FLAG"
    } else if msg.starts_with("Error decompressing") {
        "BAD_COMPRESSED_MESSAGE"
    } else if msg.starts_with("Unexpected EOF") {
        "TRUNCATED_MESSAGE"
    } else if msg.starts_with("Missing request message") {
        "MISSING_MESSAGE"
    } else {
        "INVALID_FRAME"
    }
}

/// A reason for statuses of services not ours (health, reflection), named
/// after the code.
fn fallback_reason(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL_ERROR",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Rewrites a trailers-only error answer that has no reason of ours with
/// [`client_input_status`]. Answers with a body (every success, and every
/// stream) pass unchanged; the check is one header lookup.
pub fn tag_refusal<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers_mut();
    let refused = headers.get(Status::GRPC_STATUS).is_some_and(|v| v.as_bytes() != b"0");
    if !refused || headers.contains_key(REASON_METADATA) {
        return resp;
    }
    let Some(st) = Status::from_header_map(headers) else {
        return resp;
    };
    let fixed = client_input_status(&st);
    for h in [Status::GRPC_STATUS, Status::GRPC_MESSAGE, Status::GRPC_STATUS_DETAILS] {
        headers.remove(h);
    }
    if fixed.add_header(headers).is_err() {
        // Cannot happen for our own codes and reasons; keep tonic's answer.
        let _ = st.add_header(headers);
    }
    resp
}

/// Wraps a request's body in a [`FramingCheck`].
pub fn check_framing(req: http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> {
    req.map(|b| tonic::body::Body::new(FramingCheck::new(b)))
}

/// A request body that follows gRPC's length-prefixed frames (a flag byte, a
/// u32 big-endian length, the message) and turns an end of the body inside a
/// frame into `INVALID_ARGUMENT` / `TRUNCATED_MESSAGE`. It only counts bytes;
/// the data passes through unchanged.
pub struct FramingCheck<B> {
    inner: B,
    /// Header bytes of the next frame seen so far (0..5).
    header: [u8; 5],
    header_seen: usize,
    /// Message bytes of the current frame still to come.
    body_left: u64,
    ended: bool,
}

impl<B> FramingCheck<B> {
    pub fn new(inner: B) -> Self {
        FramingCheck {
            inner,
            header: [0; 5],
            header_seen: 0,
            body_left: 0,
            ended: false,
        }
    }

    fn follow(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(data.len());
                self.body_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_seen).min(data.len());
            self.header[self.header_seen..self.header_seen + n].copy_from_slice(&data[..n]);
            self.header_seen += n;
            data = &data[n..];
            if self.header_seen == 5 {
                self.header_seen = 0;
                self.body_left =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as u64;
            }
        }
    }

    fn mid_frame(&self) -> bool {
        self.header_seen > 0 || self.body_left > 0
    }
}

impl<B> Body for FramingCheck<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.follow(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if self.mid_frame() => {
                self.ended = true;
                Poll::Ready(Some(Err(coded_status(
                    Code::InvalidArgument,
                    "TRUNCATED_MESSAGE",
                    "the request ended inside a frame",
                ))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.inner.is_end_stream() && !self.mid_frame())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(st: &Status) -> String {
        st.metadata()
            .get(REASON_METADATA)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn tonic_decoding_failures_become_precise_refusals() {
        let cases = [
            (
                Status::internal("failed to decode Protobuf message: SubmitRequest.operation: invalid wire type"),
                Code::InvalidArgument,
                "MALFORMED_MESSAGE",
            ),
            (
                Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ),
                Code::InvalidArgument,
                "COMPRESSED_WITHOUT_ENCODING",
            ),
            (
                Status::internal("protocol error: received message with invalid compression flag: 2 (valid flags are 0 and 1), while sending request"),
                Code::InvalidArgument,
                "INVALID_COMPRESSION_FLAG",
            ),
            (Status::internal("Unexpected EOF decoding stream."), Code::InvalidArgument, "TRUNCATED_MESSAGE"),
            (Status::internal("Missing request message."), Code::InvalidArgument, "MISSING_MESSAGE"),
            (
                Status::out_of_range("Error, decoded message length too large: found 4294967295 bytes, the limit is: 4194304 bytes"),
                Code::ResourceExhausted,
                "MESSAGE_TOO_LARGE",
            ),
            (Status::internal("something new"), Code::InvalidArgument, "INVALID_FRAME"),
            (Status::unimplemented(""), Code::Unimplemented, "UNKNOWN_METHOD"),
            (Status::not_found("unknown service"), Code::NotFound, "NOT_FOUND"),
        ];
        for (st, code, want) in cases {
            let fixed = client_input_status(&st);
            assert_eq!((fixed.code(), reason(&fixed).as_str()), (code, want), "{st:?}");
            assert_eq!(fixed.message(), st.message());
        }
    }

    #[test]
    fn framing_check_follows_frames_across_chunks() {
        let mut f = FramingCheck::new(());
        // Two frames (3 and 0 bytes) cut at odd places.
        for chunk in [&[0u8, 0][..], &[0, 0, 3, 7], &[8, 9, 0, 0, 0], &[0, 0]] {
            f.follow(chunk);
        }
        assert!(!f.mid_frame());
        f.follow(&[0, 0, 0, 0, 2]);
        assert!(f.mid_frame(), "a header without its body");
        f.follow(&[1, 2, 0]);
        assert!(f.mid_frame(), "a partial header");
    }

    #[test]
    fn only_trailers_only_answers_without_our_reason_are_rewritten() {
        let answer = |st: Status| -> http::Response<()> { st.into_http() };
        let r = tag_refusal(answer(Status::internal("Missing request message.")));
        let st = Status::from_header_map(r.headers()).unwrap();
        assert_eq!(
            (st.code(), reason(&st).as_str()),
            (Code::InvalidArgument, "MISSING_MESSAGE")
        );
        // Ours (a real fault, with its reason) passes unchanged.
        let ours = crate::convert::internal("disk on fire");
        let r = tag_refusal(answer(ours));
        let st = Status::from_header_map(r.headers()).unwrap();
        assert_eq!((st.code(), reason(&st).as_str()), (Code::Internal, "INTERNAL_ERROR"));
        // A success (no grpc-status in the headers) is left alone.
        let ok = tag_refusal(http::Response::new(()));
        assert!(ok.headers().is_empty());
    }
}
