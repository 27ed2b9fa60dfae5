import CFuse3

/// The success of a request told to the kernel before the operation has finished, so the
/// caller goes on while the rest is written. Sent at most once: by the operation, which keeps
/// the locks that make every later request on the same objects wait for the rest, or at the
/// end if it never did. An error after it was sent can no longer be answered: it is logged.
final class EarlyAnswer {
    private let req: fuse_req_t?
    private(set) var sent = false

    init(_ req: fuse_req_t?) { self.req = req }

    func send() {
        guard !sent else { return }
        sent = true
        fuse_reply_err(req, 0)
    }
}
