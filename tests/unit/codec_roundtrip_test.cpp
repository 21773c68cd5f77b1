// Encode/decode round trips over randomized packets of every type and version: whatever
// the encoder accepts, the decoder must give back unchanged, and encoded_size() must be
// the exact size written.

#include <doctest/doctest.h>

#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/error.hpp"
#include "mqtt/protocol/codec.hpp"
#include "mqtt/protocol/framer.hpp"
#include "mqtt/protocol/publish_codec.hpp"

using namespace mqtt::protocol;

namespace {

struct gen {
    std::mt19937 rng;
    explicit gen(unsigned seed) : rng(seed) {}

    std::uint32_t num(std::uint32_t lo, std::uint32_t hi) {
        return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
    }
    bool coin() { return num(0, 1) == 1; }

    // Well-formed UTF-8 without U+0000: ASCII plus 2, 3 and 4 byte characters.
    std::string text(std::size_t max_len, bool allow_wildcards = true) {
        static const char* pieces[] = {"a", "Z", "/", " ", "é", "€", "😀", "x", "$", "-"};
        std::string s;
        const auto n = num(0, static_cast<std::uint32_t>(max_len));
        for (std::uint32_t i = 0; i < n; ++i) s += pieces[num(0, 9)];
        if (allow_wildcards && coin()) s += coin() ? "/+" : "/#";
        return s;
    }
    std::string topic() {
        auto t = text(20, false);
        return t.empty() ? "t" : t;
    }
    std::string bytes(std::size_t max_len) {
        std::string s(num(0, static_cast<std::uint32_t>(max_len)), '\0');
        for (auto& c : s) c = static_cast<char>(num(0, 255));
        return s;
    }
    std::uint16_t packet_id() { return static_cast<std::uint16_t>(num(1, 65535)); }
    qos any_qos() { return static_cast<qos>(num(0, 2)); }

    properties props(property_context ctx) {
        properties p;
        auto maybe = [&](property_id id) { return is_allowed_in(id, ctx) && coin(); };
        using id = property_id;
        if (maybe(id::payload_format_indicator)) p.payload_format_indicator = 0;
        if (maybe(id::message_expiry_interval)) p.message_expiry_interval = num(0, 1u << 31);
        if (maybe(id::content_type)) p.content_type = text(10);
        if (maybe(id::response_topic)) p.response_topic = topic();
        if (maybe(id::correlation_data)) p.correlation_data = bytes(10);
        if (maybe(id::subscription_identifier)) {
            const auto n = ctx == property_context::publish ? num(1, 3) : 1;
            for (std::uint32_t i = 0; i < n; ++i)
                p.subscription_identifiers.push_back(num(1, max_variable_int));
        }
        if (maybe(id::session_expiry_interval)) p.session_expiry_interval = num(0, 0xFFFFFFFF);
        if (maybe(id::assigned_client_identifier)) p.assigned_client_identifier = text(10);
        if (maybe(id::server_keep_alive)) p.server_keep_alive = static_cast<std::uint16_t>(num(0, 65535));
        if (maybe(id::authentication_method)) p.authentication_method = text(8);
        if (maybe(id::authentication_data)) p.authentication_data = bytes(8);
        // Authentication Data needs its method; so does any AUTH but the empty one.
        if ((p.authentication_data || ctx == property_context::auth) && !p.authentication_method)
            p.authentication_method = text(8);
        if (maybe(id::request_problem_information)) p.request_problem_information = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::will_delay_interval)) p.will_delay_interval = num(0, 1000);
        if (maybe(id::request_response_information)) p.request_response_information = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::response_information)) p.response_information = text(8);
        if (maybe(id::server_reference)) p.server_reference = text(8);
        if (maybe(id::reason_string)) p.reason_string = text(12);
        if (maybe(id::receive_maximum)) p.receive_maximum = static_cast<std::uint16_t>(num(1, 65535));
        if (maybe(id::topic_alias_maximum)) p.topic_alias_maximum = static_cast<std::uint16_t>(num(0, 65535));
        if (maybe(id::topic_alias)) p.topic_alias = static_cast<std::uint16_t>(num(1, 65535));
        if (maybe(id::maximum_qos)) p.maximum_qos = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::retain_available)) p.retain_available = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::user_property)) {
            for (auto n = num(1, 3); n > 0; --n) p.user_properties.emplace_back(text(5), text(5));
        }
        if (maybe(id::maximum_packet_size)) p.maximum_packet_size = num(1, 0xFFFFFFFF);
        if (maybe(id::wildcard_subscription_available)) p.wildcard_subscription_available = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::subscription_identifier_available)) p.subscription_identifier_available = static_cast<std::uint8_t>(num(0, 1));
        if (maybe(id::shared_subscription_available)) p.shared_subscription_available = static_cast<std::uint8_t>(num(0, 1));
        return p;
    }
    properties props_for(protocol_version v, property_context ctx) {
        return is_v5(v) ? props(ctx) : properties{};
    }

    reason_code code_for(packet_type t, protocol_version v) {
        if (!is_v5(v)) return reason_code::success;
        for (;;) {
            auto c = static_cast<reason_code>(num(0, 0xA2));
            if (is_allowed_in(c, t)) return c;
        }
    }

    packet make(packet_type t, protocol_version v);
};

packet gen::make(packet_type t, protocol_version v) {
    switch (t) {
        case packet_type::connect: {
            connect_packet p;
            p.version = v;
            p.clean_start = coin();
            p.keep_alive = static_cast<std::uint16_t>(num(0, 65535));
            p.client_id = text(23, false);
            if (coin()) p.username = text(10);
            if (coin() && (is_v5(v) || p.username)) p.password = bytes(10);
            if (coin()) {
                will_message w{topic(), bytes(30), any_qos(), coin(), props_for(v, property_context::will)};
                p.will = std::move(w);
            }
            p.props = props_for(v, property_context::connect);
            return p;
        }
        case packet_type::connack: {
            connack_packet p;
            if (is_v5(v)) {
                p.code = code_for(t, v);
            } else {
                p.code = to_reason_code(static_cast<connect_return_code>(num(0, 5)));
            }
            p.session_present = p.code == reason_code::success && coin();
            p.props = props_for(v, property_context::connack);
            return p;
        }
        case packet_type::publish: {
            publish_packet p;
            p.topic = topic();
            p.payload = bytes(200);
            p.qos_level = any_qos();
            p.retain = coin();
            if (p.qos_level != qos::at_most_once) {
                p.packet_id = packet_id();
                p.dup = coin();
            }
            p.props = props_for(v, property_context::publish);
            if (p.props.topic_alias && coin()) p.topic.clear();
            return p;
        }
        case packet_type::puback: return puback_packet{packet_id(), code_for(t, v), props_for(v, property_context::puback)};
        case packet_type::pubrec: return pubrec_packet{packet_id(), code_for(t, v), props_for(v, property_context::pubrec)};
        case packet_type::pubrel: return pubrel_packet{packet_id(), code_for(t, v), props_for(v, property_context::pubrel)};
        case packet_type::pubcomp: return pubcomp_packet{packet_id(), code_for(t, v), props_for(v, property_context::pubcomp)};
        case packet_type::subscribe: {
            subscribe_packet p;
            p.packet_id = packet_id();
            for (auto n = num(1, 4); n > 0; --n) {
                subscription s;
                s.filter = text(15);
                if (s.filter.empty()) s.filter = "#";
                s.options.max_qos = any_qos();
                if (is_v5(v)) {
                    s.options.no_local = coin();
                    s.options.retain_as_published = coin();
                    s.options.retain = static_cast<retain_handling>(num(0, 2));
                }
                p.subscriptions.push_back(std::move(s));
            }
            p.props = props_for(v, property_context::subscribe);
            return p;
        }
        case packet_type::suback: {
            suback_packet p;
            p.packet_id = packet_id();
            static const reason_code v3_codes[] = {reason_code::success, reason_code::granted_qos_1,
                                                   reason_code::granted_qos_2,
                                                   reason_code::unspecified_error};
            for (auto n = num(1, 4); n > 0; --n)
                p.codes.push_back(is_v5(v) ? code_for(t, v) : v3_codes[num(0, 3)]);
            p.props = props_for(v, property_context::suback);
            return p;
        }
        case packet_type::unsubscribe: {
            unsubscribe_packet p;
            p.packet_id = packet_id();
            for (auto n = num(1, 4); n > 0; --n) p.filters.push_back(text(15));
            p.props = props_for(v, property_context::unsubscribe);
            return p;
        }
        case packet_type::unsuback: {
            unsuback_packet p;
            p.packet_id = packet_id();
            if (is_v5(v))
                for (auto n = num(1, 4); n > 0; --n) p.codes.push_back(code_for(t, v));
            p.props = props_for(v, property_context::unsuback);
            return p;
        }
        case packet_type::pingreq: return pingreq_packet{};
        case packet_type::pingresp: return pingresp_packet{};
        case packet_type::disconnect:
            return disconnect_packet{code_for(t, v), props_for(v, property_context::disconnect)};
        case packet_type::auth: {
            auth_packet p{code_for(t, v), props_for(v, property_context::auth)};
            return p;
        }
    }
    return pingreq_packet{};
}

}  // namespace

TEST_CASE("codec: randomized round trips for every packet type and version") {
    gen g(20261122);
    const protocol_version versions[] = {protocol_version::v3_1, protocol_version::v3_1_1,
                                         protocol_version::v5};
    int checked = 0;
    for (auto v : versions) {
        for (int t = 1; t <= 15; ++t) {
            const auto type = static_cast<packet_type>(t);
            if (type == packet_type::auth && !is_v5(v)) continue;
            for (int i = 0; i < 300; ++i) {
                const auto original = g.make(type, v);
                auto size = encoded_size(original, v);
                REQUIRE_MESSAGE(size, to_string(type) << " v" << to_string(v) << ": "
                                                      << size.error().message());
                auto bytes = encode(original, v);
                REQUIRE(bytes);
                REQUIRE(bytes->size() == *size);
                auto decoded = decode_packet(*bytes, v);
                REQUIRE_MESSAGE(decoded, to_string(type) << " v" << to_string(v) << ": "
                                                         << decoded.error().message());
                CHECK_MESSAGE(*decoded == original, to_string(type) << " v" << to_string(v));
                ++checked;
            }
        }
    }
    CHECK(checked == 3 * 14 * 300 + 300);
}

TEST_CASE("codec: encode_into writes exactly encoded_size bytes") {
    gen g(7);
    for (int i = 0; i < 200; ++i) {
        auto p = g.make(packet_type::publish, protocol_version::v5);
        auto size = encoded_size(p, protocol_version::v5);
        REQUIRE(size);
        std::vector<std::uint8_t> out(*size + 8, 0xEE);
        encode_into(p, protocol_version::v5, std::span(out).first(*size));
        for (std::size_t k = *size; k < out.size(); ++k) REQUIRE(out[k] == 0xEE);
        auto again = encode(p, protocol_version::v5);
        REQUIRE(again);
        CHECK(std::equal(again->begin(), again->end(), out.begin()));
    }
}

TEST_CASE("codec: a PUBLISH appended from its struct is the packet's bytes after the old ones") {
    // publish_codec.hpp's encode_append() writes the header, then appends the payload
    // without zero-filling room for it first: the bytes must be the variant encoder's.
    gen g(2026);
    const protocol_version versions[] = {protocol_version::v3_1_1, protocol_version::v5};
    for (auto v : versions) {
        std::vector<std::uint8_t> out{0xA1, 0xB2, 0xC3};  // earlier output stays as it was
        std::vector<std::uint8_t> expected = out;
        for (int i = 0; i < 60; ++i) {
            auto p = std::get<publish_packet>(g.make(packet_type::publish, v));
            if (i % 10 == 0) p.payload.assign(g.num(4096, 70000), static_cast<char>('a' + i % 26));
            REQUIRE(encode_append(p, v, out) == std::error_code{});  // the struct overload
            auto whole = encode(packet{p}, v);
            REQUIRE(whole);
            expected.insert(expected.end(), whole->begin(), whole->end());
            REQUIRE(out.size() == expected.size());
        }
        CHECK(out == expected);
    }
}

TEST_CASE("codec: randomized packets survive any chunking through the framer") {
    gen g(99);
    std::vector<std::uint8_t> stream;
    std::vector<packet> sent;
    for (int i = 0; i < 500; ++i) {
        auto p = g.make(static_cast<packet_type>(g.num(2, 15)), protocol_version::v5);
        REQUIRE(encode_append(p, protocol_version::v5, stream) == std::error_code{});
        sent.push_back(std::move(p));
    }
    framer f;
    std::size_t at = 0, got = 0;
    while (at < stream.size()) {
        const auto n = std::min<std::size_t>(g.num(1, 300), stream.size() - at);
        f.feed(std::span(stream).subspan(at, n));
        at += n;
        for (;;) {
            auto fr = f.next();
            REQUIRE(fr);
            if (!*fr) break;
            auto p = decode((*fr)->first_byte, (*fr)->body, protocol_version::v5);
            REQUIRE(p);
            REQUIRE(got < sent.size());
            CHECK(*p == sent[got]);
            ++got;
        }
    }
    CHECK(got == sent.size());
    CHECK(f.buffered() == 0);
}

TEST_CASE("codec: the encoder refuses what cannot be sent") {
    using mqtt::errc;
    auto err = [](const packet& p, protocol_version v) {
        auto r = encoded_size(p, v);
        return r ? std::error_code{} : r.error();
    };
    publish_packet pub;
    pub.topic = "a/+";
    pub.payload = "x";
    CHECK(err(pub, protocol_version::v5) == errc::topic_name_has_wildcard);
    pub.topic = "a";
    pub.qos_level = qos::at_least_once;
    CHECK(err(pub, protocol_version::v5) == errc::zero_packet_identifier);
    pub.packet_id = 1;
    pub.props.session_expiry_interval = 5;
    CHECK(err(pub, protocol_version::v5) == errc::property_not_allowed);
    // Properties do not exist before 5.0: they are left out, not an error.
    CHECK(err(pub, protocol_version::v3_1_1) == std::error_code{});
    pub.props = {};
    pub.topic = std::string(70000, 'a');
    CHECK(err(pub, protocol_version::v5) == errc::string_too_long);
    subscribe_packet sub;
    sub.packet_id = 1;
    CHECK(err(sub, protocol_version::v5) == errc::empty_subscription_list);
    CHECK(err(auth_packet{}, protocol_version::v3_1_1) == errc::reserved_packet_type);
    puback_packet ack;
    ack.packet_id = 1;
    ack.code = reason_code::banned;
    CHECK(err(ack, protocol_version::v5) == errc::invalid_reason_code);
    connect_packet c;
    c.version = protocol_version::v3_1_1;
    c.password = "pw";
    CHECK(err(c, protocol_version::v3_1_1) == errc::password_without_username);
}

TEST_CASE("codec: 5.0 acknowledgements use their shortest form") {
    auto bytes = [](const packet& p) { return *encode(p, protocol_version::v5); };
    using b = std::vector<std::uint8_t>;
    puback_packet ack;
    ack.packet_id = 0x1234;
    CHECK(bytes(ack) == b{0x40, 0x02, 0x12, 0x34});
    pubrec_packet rec;
    rec.packet_id = 1;
    rec.code = reason_code::no_matching_subscribers;
    CHECK(bytes(rec) == b{0x50, 0x03, 0x00, 0x01, 0x10});
    CHECK(bytes(disconnect_packet{}) == b{0xE0, 0x00});
    disconnect_packet d;
    d.code = reason_code::server_shutting_down;
    CHECK(bytes(d) == b{0xE0, 0x01, 0x8B});
    pubrel_packet rel;
    rel.packet_id = 2;
    CHECK(bytes(rel) == b{0x62, 0x02, 0x00, 0x02});
}

TEST_CASE("codec: a wildcard anywhere in a PUBLISH topic is refused, look-alikes are not") {
    // Topics of 1 to 40 bytes, so that the wildcard falls in every position of the eight-byte
    // chunks the check reads and of the tail after them; decode() and decode_publish_view()
    // must agree. The look-alikes are the bytes next to '#' (0x23) and '+' (0x2B).
    auto body_of = [](const std::string& topic) {
        std::vector<std::uint8_t> body{0x00, static_cast<std::uint8_t>(topic.size())};
        body.insert(body.end(), topic.begin(), topic.end());
        body.push_back('x');
        return body;
    };
    auto check = [&](const std::string& topic, bool wildcard) {
        const auto body = body_of(topic);
        const auto decoded = decode(0x30, body, protocol_version::v3_1_1);
        publish_view view;
        const auto ec = decode_publish_view(0x30, body, protocol_version::v3_1_1, view);
        INFO("topic " << topic);
        if (wildcard) {
            CHECK(decoded.error() == mqtt::errc::topic_name_has_wildcard);
            CHECK(ec == mqtt::errc::topic_name_has_wildcard);
        } else {
            CHECK(decoded.has_value());
            CHECK_FALSE(ec);
            CHECK(view.topic == topic);
        }
    };
    for (std::size_t n = 1; n <= 40; ++n) {
        for (std::size_t at = 0; at < n; ++at) {
            for (const char c : {'#', '+'}) {
                std::string topic(n, 'a');
                topic[at] = c;
                check(topic, true);
            }
            for (const char c : {'"', '$', '*', ',', '\x7f', 'K', 'c', 'k'}) {
                std::string topic(n, 'b');
                topic[at] = c;
                check(topic, false);
            }
            // UTF-8 with bytes 0xAB and 0xA3 ('+' and '#' with the high bit set).
            for (const std::string_view c : {"\xc3\xab", "\xe2\x82\xa3"}) {
                if (at + c.size() > n) continue;
                std::string topic(n, 'b');
                topic.replace(at, c.size(), c);
                check(topic, false);
            }
        }
    }
}
