/// Orca's execution and stage statuses, with their wire names.
public enum ExecutionStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case notStarted = "NOT_STARTED"
    case running = "RUNNING"
    case paused = "PAUSED"
    case suspended = "SUSPENDED"
    case succeeded = "SUCCEEDED"
    case failedContinue = "FAILED_CONTINUE"
    case terminal = "TERMINAL"
    case canceled = "CANCELED"
    case redirect = "REDIRECT"
    case stopped = "STOPPED"
    case skipped = "SKIPPED"
    case buffered = "BUFFERED"

    /// Finished, one way or another.
    public var isComplete: Bool {
        switch self {
        case .succeeded, .failedContinue, .terminal, .canceled, .stopped, .skipped: true
        default: false
        }
    }

    /// Finished in a way that halts what comes after it.
    public var isHalt: Bool {
        switch self {
        case .terminal, .canceled, .stopped: true
        default: false
        }
    }

    /// Finished in a way that lets downstream stages start.
    public var letsDownstreamRun: Bool {
        switch self {
        case .succeeded, .skipped, .failedContinue: true
        default: false
        }
    }
}
