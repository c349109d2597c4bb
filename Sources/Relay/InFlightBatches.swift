import EventLog
import Kafka

/// Batches handed to the producer and not yet acknowledged, oldest first.
///
/// Reading and producing run ahead of the broker's acknowledgements; the checkpoint may only
/// follow the acknowledged prefix, so acknowledgements are taken strictly in order.
struct InFlightBatches {
    let capacity: Int
    private var batches: [(last: LogPosition, ticket: DeliveryTicket)] = []

    init(capacity: Int) {
        self.capacity = capacity
    }

    var isFull: Bool { batches.count >= capacity }

    mutating func append(last: LogPosition, ticket: DeliveryTicket) {
        batches.append((last, ticket))
    }

    /// Removes the finished prefix and returns where it ends; throws the first delivery error.
    mutating func takeAcknowledged() async throws -> LogPosition? {
        var acknowledged: LogPosition?
        while let oldest = batches.first, oldest.ticket.isFinished {
            try await oldest.ticket.wait()
            acknowledged = oldest.last
            batches.removeFirst()
        }
        return acknowledged
    }

    /// Waits until the oldest batch is reported.
    func waitForOldest() async throws {
        try await batches.first?.ticket.wait()
    }

    /// Forgets every batch (they went to a cluster that is no longer the relay's).
    mutating func abandon() { batches.removeAll() }
}
