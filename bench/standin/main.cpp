// tern-standin: a broker stand-in that only acknowledges (sink) or also copies each PUBLISH
// to the matching subscribers (echo), for measuring tern-bench itself (bench/bench-headroom).
// Not a broker: see standin.hpp for what it leaves out.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "standin.hpp"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void on_signal(int) { stop_requested = 1; }

constexpr const char* usage =
    "Usage: tern-standin [--host ADDR] [--port PORT] [--mode echo|sink]\n"
    "                    [--max-packet-size BYTES] [--high-water BYTES]\n"
    "A broker stand-in for measuring tern-bench: answers CONNECT, SUBSCRIBE, UNSUBSCRIBE and\n"
    "PINGREQ, acknowledges QoS 1 and 2 PUBLISHes and, in echo mode (the default), copies each\n"
    "PUBLISH to the connections whose subscriptions match its topic; sink drops them. No\n"
    "sessions, queues, retained messages, wills, shared subscriptions or authentication.\n"
    "  --host ADDR             IPv4 address to listen on (default: 127.0.0.1)\n"
    "  --port PORT             port (default: 0, a free one)\n"
    "  --mode echo|sink        (default: echo)\n"
    "  --max-packet-size BYTES larger packets close the connection (default: 1048576)\n"
    "  --high-water BYTES      output per connection past which its feeders are not read\n"
    "                          (default: 1048576)\n"
    "Prints 'tern-standin listening on ADDR:PORT, mode MODE' on stderr once it listens and a\n"
    "line of counts when SIGTERM or SIGINT stops it.\n";

bool parse_number(std::string_view text, unsigned long long max, unsigned long long& out) {
    if (text.empty()) return false;
    char* end = nullptr;
    const std::string s(text);
    out = std::strtoull(s.c_str(), &end, 10);
    return *end == '\0' && out <= max && s[0] != '-';
}

}  // namespace

int main(int argc, char** argv) {
    mqtt::bench::standin::settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help") {
            std::cout << usage;
            return 0;
        }
        if (i + 1 >= argc) {
            std::cerr << "tern-standin: unknown option or missing value: " << a << "\n" << usage;
            return 2;
        }
        const std::string_view v = argv[++i];
        unsigned long long n = 0;
        if (a == "--host") {
            s.host = v;
        } else if (a == "--port" && parse_number(v, 65535, n)) {
            s.port = static_cast<std::uint16_t>(n);
        } else if (a == "--mode" && (v == "echo" || v == "sink")) {
            s.mode = v == "echo" ? mqtt::bench::standin::mode::echo
                                 : mqtt::bench::standin::mode::sink;
        } else if (a == "--max-packet-size" && parse_number(v, 268435460, n) && n >= 2) {
            s.max_packet_size = static_cast<std::uint32_t>(n);
        } else if (a == "--high-water" && parse_number(v, 1ull << 40, n) && n >= 1024) {
            s.high_water = n;
        } else {
            std::cerr << "tern-standin: bad option or value: " << a << " " << v << "\n" << usage;
            return 2;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa{};
    sa.sa_handler = on_signal;  // no SA_RESTART: epoll_wait returns at once
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);

    mqtt::bench::standin::server server(s);
    if (const auto why = server.open(); !why.empty()) {
        std::cerr << "tern-standin: error: " << why << "\n";
        return 1;
    }
    std::cerr << "tern-standin listening on " << s.host << ":" << server.port() << ", mode "
              << (s.mode == mqtt::bench::standin::mode::echo ? "echo" : "sink") << std::endl;
    server.run(&stop_requested);
    const auto& st = server.stats();
    std::cerr << "tern-standin: " << st.connections << " connections, " << st.publishes_in
              << " publishes in, " << st.deliveries_out << " deliveries out, "
              << st.closed_for_errors << " closed for errors" << std::endl;
    return 0;
}
