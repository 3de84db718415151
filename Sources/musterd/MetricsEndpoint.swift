import Hummingbird
import Logging
import MusterCore
import MusterMetrics
import MusterRuntime

/// `metrics_listen`: GET /metrics in the Prometheus text format, on its own TCP listener (the
/// control socket stays a Unix socket only).
enum MetricsEndpoint {
    static func application(address: ListenAddress, supervisor: Supervisor, logger: Logger) -> some ApplicationProtocol {
        let exporter = MetricsExporter()
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            let bytes = exporter.render(await supervisor.metricsSnapshot())
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "musterd"),
            logger: logger)
    }
}
