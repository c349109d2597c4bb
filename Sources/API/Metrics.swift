import Hummingbird
import Metrics
import NIOCore
import Prometheus
import Synchronization

/// The process's metrics in Prometheus' text format at `GET /metrics`: the HTTP API's requests
/// (count and duration by route, method and status, requests in flight) and whatever else the
/// roles in this process record through swift-metrics.
public enum TopsailMetrics {
    static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Routes swift-metrics to this registry; once per process (later calls do nothing).
    public static func bootstrap() {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    static func response() -> Response {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }
}
