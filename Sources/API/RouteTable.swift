import Access
import HTTPTypes
import Hummingbird
import PipelineEngine

/// Who may call a route, as the route declares it when it is registered. The handler enforces
/// it; the permission matrix test reads every declaration and checks the handler against it, so
/// a route cannot be added without saying who may call it.
public enum RouteAccess: Sendable, Hashable {
    /// No token needed (health, metrics, the OpenAPI document).
    case open
    /// Any valid token; what the route returns or changes is limited to what the caller may see
    /// or owns (listings filtered by READ, the caller's own tokens).
    case authenticated
    /// The permission on the application the route names (in its path, body or query).
    case application(Permission)
    /// Only admins (for routes about other users' objects, such as another user's token).
    case admin
    /// Trigger deliveries (webhooks, git pushes, CI builds): no token needed — senders such as
    /// GitHub cannot send one — but one that is sent must be valid. What a delivery starts is
    /// governed by each trigger: its secret (a signature over the body) and its `runAsUser`'s
    /// EXECUTE permission. Which triggers did not fire, and why, is answered only for
    /// applications the caller may READ.
    case trigger
}

/// One registered route.
public struct RouteEntry: Sendable, Hashable, CustomStringConvertible {
    public let method: String
    public let path: String
    public let access: RouteAccess

    public var description: String { "\(method) \(path)" }
}

/// Registers routes on a router, each with its access declaration, and remembers them.
final class Routes {
    let router: Router<APIContext>
    private var entries: [RouteEntry] = []

    init(_ router: Router<APIContext>) {
        self.router = router
    }

    func on(
        _ method: HTTPRequest.Method, _ path: String, _ access: RouteAccess,
        _ handler: @escaping @Sendable (Request, APIContext) async throws -> Response
    ) {
        entries.append(RouteEntry(method: method.rawValue, path: path, access: access))
        router.on(RouterPath(path), method: method, use: handler)
    }

    var table: [RouteEntry] { entries }
}
