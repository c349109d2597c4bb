/// A place in the global log, and the order in which readers see it.
///
/// Every event carries the id of the transaction that wrote it and a global position drawn from a
/// sequence. The log is read in (transaction, position) order and only below the oldest
/// transaction that may still commit, so a checkpoint never moves past an event that could appear
/// later. `docs/decisions/0001-gap-free-log-order.md` explains why.
public struct LogPosition: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 64-bit id of the writing transaction (`pg_current_xact_id()`).
    public var transaction: Int64
    /// The global position of the event.
    public var position: Int64

    /// Before the first event.
    public static let start = LogPosition(transaction: 0, position: 0)

    public init(transaction: Int64, position: Int64) {
        self.transaction = transaction
        self.position = position
    }

    public static func < (lhs: LogPosition, rhs: LogPosition) -> Bool {
        (lhs.transaction, lhs.position) < (rhs.transaction, rhs.position)
    }

    public var description: String { "\(position)@\(transaction)" }
}
