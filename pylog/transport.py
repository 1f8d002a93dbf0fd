"""kafka-python's client config keys about the network, security and metrics, which both clients
accept and ignore.

An embedded producer or consumer has no connections, sockets, credentials or request metrics, so
these keys have no meaning here; accepting them lets a kafka-python program port unchanged. Each
client adds its own such keys (``pylog.producer.IGNORED_KEYS``, ``pylog.consumer.IGNORED_KEYS``).
"""

TRANSPORT_KEYS = frozenset(
    {
        "api_version",
        "bootstrap_servers",
        "bootstrap_timeout_ms",
        "client_dns_lookup",
        "connections_max_idle_ms",
        "kafka_client",
        "max_in_flight_requests_per_connection",
        "metadata_max_age_ms",
        "metric_reporters",
        "metrics_enabled",
        "metrics_num_samples",
        "metrics_sample_window_ms",
        "proxy_url",
        "receive_buffer_bytes",
        "receive_message_max_bytes",
        "reconnect_backoff_max_ms",
        "reconnect_backoff_ms",
        "request_timeout_ms",
        "retry_backoff_ms",
        "sasl_kerberos_domain_name",
        "sasl_kerberos_name",
        "sasl_kerberos_service_name",
        "sasl_mechanism",
        "sasl_oauth_token_provider",
        "sasl_plain_password",
        "sasl_plain_username",
        "security_protocol",
        "selector",
        "send_buffer_bytes",
        "socket_options",
        "socks5_proxy",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_check_hostname",
        "ssl_ciphers",
        "ssl_context",
        "ssl_crlfile",
        "ssl_keyfile",
        "ssl_password",
    }
)
