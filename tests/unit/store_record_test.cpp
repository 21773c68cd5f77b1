// The store's record codec and log reading: exact bytes of framed records (expected bytes
// computed with an independent bitwise CRC-32C, not with this encoder), CRC-32C, decoding of
// every record type, a log cut at every byte of its last records, bytes flipped in the
// middle, and the replayed state.

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/store/record.hpp"
#include "mqtt/store/state.hpp"
#include "mqtt/store/store_file.hpp"
#include "store_test_support.hpp"

using namespace mqtt::store;
using mqtt::protocol::qos;
using bytes = std::vector<std::uint8_t>;

namespace {

using store_test::make_msg;

bytes span_of(std::string_view s) {
    return {s.begin(), s.end()};
}

// A small log: header, a session with a subscription, a message queued for it, retained.
std::vector<record> sample_records() {
    return {
        header_record{format_version, 1'700'000'000'000},
        session_record{"c1", 3600},
        subscribe_record{"c1", "a/#", {qos::at_least_once, false, false, {}}},
        message_record{1, 1'700'000'000'100, make_msg("a/b", "one")},
        queue_push_record{"c1", 1, qos::at_least_once, false, {}},
        message_record{2, 1'700'000'000'200, make_msg("a/r", "kept", qos::at_most_once, true)},
        retained_set_record{2},
        message_record{3, 1'700'000'000'300, make_msg("a/b", "two")},
        queue_push_record{"c1", 3, qos::at_least_once, false, {}},
    };
}

bytes encode_all(const std::vector<record>& rs) {
    bytes out;
    for (const auto& r : rs) append_record(out, r);
    return out;
}

std::vector<std::uint64_t> offsets_of(const std::vector<record>& rs) {
    std::vector<std::uint64_t> off;
    bytes out;
    for (const auto& r : rs) {
        off.push_back(out.size());
        append_record(out, r);
    }
    off.push_back(out.size());
    return off;
}

bytes snapshot_of(const state& st) {
    return encode_all(st.snapshot(0));
}

// The start of a log: the header and session "c", each group committed.
bytes session_c_log() {
    bytes log;
    append_record(log, header_record{format_version, 1});
    append_record(log, commit_record{});
    append_record(log, session_record{"c", 60});
    append_record(log, commit_record{});
    return log;
}

// `b` in a new file under /tmp, for load_file(); the caller removes it.
std::string write_temp_file(const bytes& b, const std::string& tag) {
    std::string path = "/tmp/tern-store-" + tag + "-XXXXXX";
    const int fd = ::mkstemp(path.data());
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size()));
    ::close(fd);
    return path;
}

}  // namespace

TEST_CASE("store: a session's user name, or that it is not known, survives a snapshot") {
    state st;
    REQUIRE(st.apply(session_record{"named", 60, true, "alice"}));
    REQUIRE(st.apply(session_record{"anon", 60, true, std::nullopt}));
    REQUIRE(st.apply(session_record{"old", 60, false, std::nullopt}));
    // A reconnect with another user name replaces it.
    REQUIRE(st.apply(session_record{"again", 60, true, "bob"}));
    REQUIRE(st.apply(session_record{"again", 60, true, "carol"}));
    const auto back = load_bytes(encode_all(st.snapshot(0))).st;
    const auto& s = back.sessions();
    REQUIRE(s.size() == 4);
    CHECK(s.at("named").identified);
    CHECK(s.at("named").username == std::optional<std::string>{"alice"});
    CHECK(s.at("anon").identified);
    CHECK_FALSE(s.at("anon").username.has_value());
    CHECK_FALSE(s.at("old").identified);
    CHECK(s.at("again").username == std::optional<std::string>{"carol"});
}

TEST_CASE("store: a session's queued bytes follow its queue") {
    state st;
    REQUIRE(st.apply(session_record{"c", 60}));
    REQUIRE(st.apply(message_record{1, 0, make_msg("a/b", "12345")}));     // 3 + 5
    REQUIRE(st.apply(message_record{2, 0, make_msg("a/bc", "1234567")}));  // 4 + 7
    REQUIRE(st.apply(queue_push_record{"c", 1, qos::at_least_once, false, {}}));
    REQUIRE(st.apply(queue_push_record{"c", 2, qos::at_least_once, false, {}}));
    REQUIRE(st.apply(queue_push_record{"c", 1, qos::at_least_once, false, {}}));
    CHECK(st.sessions().at("c").queued_bytes == 27);
    REQUIRE(st.apply(queue_pop_record{"c"}));
    CHECK(st.sessions().at("c").queued_bytes == 19);
    const auto back = load_bytes(encode_all(st.snapshot(0))).st;
    CHECK(back.sessions().at("c").queued_bytes == 19);
}

TEST_CASE("store: CRC-32C check value") {
    CHECK(crc32c(span_of("123456789")) == 0xE3069283u);
    CHECK(crc32c(span_of("")) == 0u);
    // Incremental: the CRC of a concatenation continues from the first part's CRC.
    const auto a = span_of("12345");
    const auto b = span_of("6789");
    CHECK(crc32c(b, crc32c(a)) == 0xE3069283u);
}

TEST_CASE("store: CRC-32C with the crc32 instruction and with the table agree") {
    // crc32c() uses SSE 4.2 where the CPU has it: every length 0-300 (the 8-byte steps and
    // the tail), every alignment, continued from a previous CRC.
    std::vector<std::uint8_t> buf(320);
    std::uint32_t x = 12345;
    for (auto& b : buf) {
        x = x * 1103515245u + 12345u;
        b = static_cast<std::uint8_t>(x >> 16);
    }
    CHECK(detail::crc32c_portable(span_of("123456789")) == 0xE3069283u);
    for (std::size_t len = 0; len <= 300; ++len) {
        for (std::size_t off = 0; off < 8; ++off) {
            const std::span<const std::uint8_t> s{buf.data() + off, len};
            CHECK(crc32c(s) == detail::crc32c_portable(s));
            CHECK(crc32c(s, 0xDEADBEEFu) == detail::crc32c_portable(s, 0xDEADBEEFu));
        }
    }
}

TEST_CASE("store: exact bytes of framed records") {
    SUBCASE("session of an anonymous client: user name byte 0") {
        const bytes expected{0x54, 0x72, 0x01, 0x04, 0x00, 0x00, 0x00, 0x0B, 0x8F, 0x81, 0x07, 0x54,
                             0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10, 0x00};
        CHECK(encode_record(session_record{"c1", 3600}) == expected);
        std::size_t size = 0;
        const auto back = detail::record_at(expected, 0, size);
        REQUIRE(back.has_value());
        CHECK(std::get<session_record>(*back) == session_record{"c1", 3600, true, std::nullopt});
    }
    SUBCASE("session with a user name: byte 1, then the name") {
        const bytes expected{0x54, 0x72, 0x01, 0x04, 0x00, 0x00, 0x00, 0x14, 0xEF, 0xB0, 0x67,
                             0xD5, 0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10,
                             0x01, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6C, 0x69, 0x63, 0x65};
        const session_record r{"c1", 3600, true, "alice"};
        CHECK(encode_record(r) == expected);
        std::size_t size = 0;
        const auto back = detail::record_at(expected, 0, size);
        REQUIRE(back.has_value());
        CHECK(size == expected.size());
        CHECK(std::get<session_record>(*back) == r);
        // An empty user name (a 5.0 CONNECT may send one) is a user name, not none.
        const session_record empty{"c1", 3600, true, ""};
        const auto framed = encode_record(empty);
        const auto d =
            decode_payload(format_version, 4, std::span{framed}.subspan(frame_header_size));
        REQUIRE(d.has_value());
        CHECK(std::get<session_record>(*d) == empty);
    }
    SUBCASE("session with the listener its client came through: a string after the user") {
        const session_record r{"c1", 3600, true, "alice", "mqtt 1883 0.0.0.0"};
        const auto framed = encode_record(r);
        const bytes user_part{0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10,
                              0x01, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6C, 0x69, 0x63, 0x65};
        bytes payload = user_part;
        const std::string key = "mqtt 1883 0.0.0.0";
        payload.insert(payload.end(), {0x00, 0x00, 0x00, 17});
        payload.insert(payload.end(), key.begin(), key.end());
        CHECK(bytes(framed.begin() + frame_header_size, framed.end()) == payload);
        const auto d = decode_payload(format_version, 4, payload);
        REQUIRE(d.has_value());
        CHECK(std::get<session_record>(*d) == r);
        // A record written before listeners were kept names none.
        const auto before = decode_payload(format_version, 4, user_part);
        REQUIRE(before.has_value());
        CHECK_FALSE(std::get<session_record>(*before).listener.has_value());
        // An anonymous client's, and an empty name (never written) as damage.
        const session_record anon{"c1", 3600, true, std::nullopt, "mqtt 1 ::1"};
        const auto fa = encode_record(anon);
        const auto da = decode_payload(format_version, 4, std::span{fa}.subspan(frame_header_size));
        REQUIRE(da.has_value());
        CHECK(std::get<session_record>(*da) == anon);
        auto empty = user_part;
        empty.insert(empty.end(), {0x00, 0x00, 0x00, 0x00});
        CHECK_FALSE(decode_payload(format_version, 4, empty).has_value());
        // Kept by a snapshot, replaced by a reconnect through another listener (or none).
        state st;
        REQUIRE(st.apply(r));
        REQUIRE(st.apply(session_record{"c2", 60, true, "bob", "mqtt 1 a"}));
        REQUIRE(st.apply(session_record{"c2", 60, true, "bob"}));
        const auto back = load_bytes(encode_all(st.snapshot(0))).st;
        CHECK(back.sessions().at("c1").listener == r.listener);
        CHECK_FALSE(back.sessions().at("c2").listener.has_value());
    }
    SUBCASE("session written before user names were stored: not identified") {
        const bytes old{0x54, 0x72, 0x01, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x8B, 0xCE, 0xD8,
                        0xBF, 0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10};
        std::size_t size = 0;
        const auto back = detail::record_at(old, 0, size);
        REQUIRE(back.has_value());
        CHECK(size == old.size());
        const auto& s = std::get<session_record>(*back);
        CHECK(s.client_id == "c1");
        CHECK(s.expiry_interval == 3600);
        CHECK_FALSE(s.identified);
        CHECK_FALSE(s.username.has_value());
        // Written back as it was (a snapshot keeps "not known"), and loaded into a state.
        CHECK(encode_record(s) == old);
        const auto loaded = load_bytes(old);
        REQUIRE(loaded.st.sessions().contains("c1"));
        CHECK_FALSE(loaded.st.sessions().at("c1").identified);
    }
    SUBCASE("session with a user name byte other than 0 or 1: not a record") {
        const bytes bad{0x54, 0x72, 0x01, 0x04, 0x00, 0x00, 0x00, 0x0B, 0x6E, 0xBA, 0x77, 0xA3,
                        0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10, 0x02};
        std::size_t size = 0;
        CHECK_FALSE(detail::record_at(bad, 0, size).has_value());
        // A name cut short, and bytes after the name, are not one either.
        const bytes payload{0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E,
                            0x10, 0x01, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6C};
        CHECK_FALSE(decode_payload(format_version, 4, payload).has_value());
        bytes longer{0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x00};
        CHECK_FALSE(decode_payload(format_version, 4, longer).has_value());
    }
    SUBCASE("subscribe: options byte as in 5.0 SUBSCRIBE, Subscription Identifier 7") {
        const bytes expected{0x54, 0x72, 0x01, 0x06, 0x00, 0x00, 0x00, 0x12, 0x07, 0x37,
                             0xD1, 0x09, 0x00, 0x00, 0x00, 0x02, 0x63, 0x31, 0x00, 0x00,
                             0x00, 0x03, 0x61, 0x2F, 0x2B, 0x2D, 0x00, 0x00, 0x00, 0x07};
        mqtt::protocol::subscription_options o;
        o.max_qos = qos::at_least_once;
        o.no_local = true;
        o.retain_as_published = true;
        o.retain = mqtt::protocol::retain_handling::do_not_send;
        CHECK(encode_record(subscribe_record{"c1", "a/+", o, 7}) == expected);
    }
    SUBCASE("subscribe written before Subscription Identifiers were stored: identifier 0") {
        const bytes old{0x54, 0x72, 0x01, 0x06, 0x00, 0x00, 0x00, 0x0E, 0x43,
                        0xEE, 0x4F, 0x87, 0x00, 0x00, 0x00, 0x02, 0x63, 0x31,
                        0x00, 0x00, 0x00, 0x03, 0x61, 0x2F, 0x2B, 0x2D};
        std::size_t size = 0;
        const auto back = detail::record_at(old, 0, size);
        REQUIRE(back.has_value());
        CHECK(size == old.size());
        const auto& sub = std::get<subscribe_record>(*back);
        CHECK(sub.filter == "a/+");
        CHECK(sub.options.no_local);
        CHECK(sub.subscription_id == 0);
    }
    SUBCASE("outbox item and inbox sequence") {
        const auto add = encode_record(outbox_add_record{5, 9, {1, 3}, {}, {}});
        const bytes add_payload{0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0,
                                0, 0, 0, 9, 0, 0, 0, 2, 0, 1, 0, 3};
        REQUIRE(add.size() == frame_header_size + add_payload.size());
        CHECK(bytes(add.begin(), add.begin() + 8) ==
              bytes{0x54, 0x72, 0x01, 17, 0x00, 0x00, 0x00, 24});
        CHECK(bytes(add.begin() + frame_header_size, add.end()) == add_payload);
        // The same item written since publishers are kept: their client id after the
        // destinations. The record above (as written before) loads with none.
        const outbox_add_record from_p{5, 9, {1, 3}, {}, {}, "pc"};
        const auto fp = encode_record(from_p);
        bytes from_payload = add_payload;
        from_payload.insert(from_payload.end(), {0, 0, 0, 2, 'p', 'c'});
        CHECK(bytes(fp.begin() + 2, fp.begin() + 8) == bytes{0x01, 17, 0x00, 0x00, 0x00, 30});
        CHECK(bytes(fp.begin() + frame_header_size, fp.end()) == from_payload);
        {
            std::size_t size = 0;
            const auto back = detail::record_at(fp, 0, size);
            REQUIRE(back.has_value());
            CHECK(std::get<outbox_add_record>(*back) == from_p);
            const auto before = detail::record_at(add, 0, size);
            REQUIRE(before.has_value());
            CHECK(std::get<outbox_add_record>(*before).publisher.empty());
            // An empty client id is never written: damage.
            auto empty = add_payload;
            empty.insert(empty.end(), {0, 0, 0, 0});
            CHECK_FALSE(decode_payload(1, 17, empty).has_value());
        }
        // A share group's delivery: one destination, the subscription and the member.
        const outbox_add_record share{5, 9, {1}, "$share/g/a", "c"};
        const auto sb = encode_record(share);
        const bytes share_payload{0,   0,   0,   0,   0,   0,   0,   5,   0, 0, 0, 0,  0,   0,
                                  0,   9,   0,   0,   0,   1,   0,   1,   0, 0, 0, 10, '$', 's',
                                  'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0, 0, 0, 1,  'c'};
        CHECK(type_of(share) == record_type::outbox_share);
        CHECK(bytes(sb.begin() + 2, sb.begin() + 4) == bytes{0x01, 21});
        CHECK(bytes(sb.begin() + frame_header_size, sb.end()) == share_payload);
        std::size_t size = 0;
        const auto back = detail::record_at(sb, 0, size);
        REQUIRE(back.has_value());
        CHECK(std::get<outbox_add_record>(*back) == share);
        // Two destinations are damage.
        auto two = encode_record(outbox_add_record{5, 9, {1, 2}, "$share/g/a", "c"});
        CHECK_FALSE(detail::record_at(two, 0, size).has_value());
        const auto applied = encode_record(inbox_applied_record{2, 0x0102});
        CHECK(bytes(applied.begin() + 2, applied.begin() + 8) == bytes{0x01, 20, 0, 0, 0, 10});
        CHECK(bytes(applied.begin() + frame_header_size, applied.end()) ==
              bytes{0, 2, 0, 0, 0, 0, 0, 0, 0x01, 0x02});
        const auto ack = encode_record(outbox_ack_record{1, 7});
        CHECK(bytes(ack.begin() + frame_header_size, ack.end()) ==
              bytes{0, 1, 0, 0, 0, 0, 0, 0, 0, 7});
        const auto last = encode_record(outbox_last_record{7});
        CHECK(bytes(last.begin() + frame_header_size, last.end()) == bytes{0, 0, 0, 0, 0, 0, 0, 7});
    }
    SUBCASE("message with properties and an expiry") {
        const bytes expected{0x54, 0x72, 0x01, 0x01, 0x00, 0x00, 0x00, 0x2C, 0xAB, 0x59, 0xEB, 0xEB,
                             0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
                             0x00, 0x00, 0x03, 0xE8, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00,
                             0x00, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x06, 0x05, 0x02, 0x00, 0x00,
                             0x00, 0x3C, 0x00, 0x00, 0x00, 0x02, 0x68, 0x69};
        auto m = make_msg("t", "hi", qos::at_least_once, true);
        m->message_expiry_interval = 60;
        m->props_v5 = {0x05, 0x02, 0x00, 0x00, 0x00, 0x3C};
        const record r = message_record{7, 1000, m};
        CHECK(encode_record(r) == expected);
        std::size_t size = 0;
        const auto back = detail::record_at(expected, 0, size);
        REQUIRE(back.has_value());
        CHECK(size == expected.size());
        CHECK(*back == r);
    }
    SUBCASE("message without properties: empty in memory, Property Length 0 on disk") {
        // The bytes every build wrote for such a message (props {0x00}), so a store of an
        // older build loads and this build's store stays readable by it.
        const bytes expected{0x54, 0x72, 0x01, 0x01, 0x00, 0x00, 0x00, 0x27, 0x7B, 0x25, 0xB1,
                             0x61, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
                             0x00, 0x00, 0x00, 0x00, 0x03, 0xE8, 0x01, 0x00, 0x00, 0x00, 0x00,
                             0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x01,
                             0x00, 0x00, 0x00, 0x00, 0x02, 0x68, 0x69};
        auto none = make_msg("t", "hi");
        none->props_v5.clear();
        auto old_form = make_msg("t", "hi");  // props_v5 {0x00}, as messages were held before
        CHECK(encode_record(message_record{7, 1000, none}) == expected);
        CHECK(encode_record(message_record{7, 1000, old_form}) == expected);
        std::size_t size = 0;
        const auto back = detail::record_at(expected, 0, size);
        REQUIRE(back.has_value());
        CHECK(size == expected.size());
        const auto& m = std::get<message_record>(*back);
        CHECK(m.msg->props_v5.empty());
        CHECK(m.msg->payload == "hi");
        CHECK(*back == record{message_record{7, 1000, none}});
        CHECK(*back == record{message_record{7, 1000, old_form}});
        // Not the same as a message that has properties.
        auto with = make_msg("t", "hi");
        with->props_v5 = {0x02, 0x01, 0x01};
        CHECK_FALSE(*back == record{message_record{7, 1000, with}});
    }
}

TEST_CASE("store: every record type decodes to itself") {
    mqtt::protocol::subscription_options o;
    o.max_qos = qos::exactly_once;
    const std::vector<record> all{
        header_record{1, 42},
        message_record{9, -5, make_msg("x/y", std::string(300, 'p'))},
        retained_set_record{9},
        retained_clear_record{"x/y"},
        session_record{"id", 0xFFFFFFFF},
        session_end_record{"id"},
        subscribe_record{"id", "#", o, 268'435'455},
        unsubscribe_record{"id", "#"},
        queue_push_record{"id", 9, qos::exactly_once, true, {1, 268'435'455}},
        queue_pop_record{"id"},
        inflight_add_record{"id", 65535, 9, qos::exactly_once, true, stage::pubrec, {42}},
        inflight_stage_record{"id", 65535, stage::pubcomp},
        inflight_remove_record{"id", 65535},
        qos2_in_add_record{"id", 3},
        qos2_in_remove_record{"id", 3},
        session_offline_record{"id", 60, 1234, 9, 1200},
        commit_record{},
        outbox_add_record{0xFFFFFFFFFFFFFFFF, 9, {1, 255}, {}, {}},
        outbox_ack_record{255, 12},
        outbox_last_record{77},
        inbox_applied_record{3, 0x0102030405060708},
    };
    REQUIRE(all.size() == std::variant_size_v<record>);
    for (const auto& r : all) {
        CAPTURE(static_cast<int>(type_of(r)));
        const auto b = encode_record(r);
        std::size_t size = 0;
        const auto back = detail::record_at(b, 0, size);
        REQUIRE(back.has_value());
        CHECK(*back == r);
        CHECK(size == b.size());
    }
}

TEST_CASE("store: payloads that do not parse are refused") {
    // Trailing byte after a session record's fields.
    CHECK_FALSE(decode_payload(1, 4, bytes{0, 0, 0, 1, 'c', 0, 0, 0, 1, 0xFF}));
    // Truncated string.
    CHECK_FALSE(decode_payload(1, 5, bytes{0, 0, 0, 9, 'c'}));
    // QoS 3, retain 2 in a queue record.
    const bytes head{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};  // empty client id, message 1
    const auto queue_push = [&](bytes tail) {
        bytes b = head;
        b.insert(b.end(), tail.begin(), tail.end());
        return decode_payload(1, 8, b);
    };
    CHECK(queue_push({1, 1, 0, 0, 0, 0}));
    CHECK_FALSE(queue_push({3, 0, 0, 0, 0, 0}));
    CHECK_FALSE(queue_push({1, 2, 0, 0, 0, 0}));
    // A Subscription Identifier of 0, and a count larger than the bytes that follow.
    CHECK_FALSE(queue_push({1, 1, 0, 0, 0, 1, 0, 0, 0, 0}));
    CHECK_FALSE(queue_push({1, 1, 0xFF, 0xFF, 0xFF, 0xFF}));
    // An outbox item: sequence 1, message 2, one destination (shard 1); without one, with
    // sequence or message 0, with a count past the bytes or past any number of shards.
    CHECK(decode_payload(1, 17,
                         bytes{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 1}));
    CHECK_FALSE(
        decode_payload(1, 17, bytes{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}));
    CHECK_FALSE(decode_payload(
        1, 17, bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 1}));
    CHECK_FALSE(decode_payload(
        1, 17, bytes{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}));
    CHECK_FALSE(decode_payload(
        1, 17, bytes{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1}));
    CHECK_FALSE(decode_payload(1, 17, bytes{0, 0, 0, 0, 0, 0,    0,    1,    0,    0, 0,
                                            0, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1}));
    // An inbox sequence cut short, an outbox_last with a byte too many.
    CHECK_FALSE(decode_payload(1, 20, bytes{0, 1, 0, 0, 0, 0, 0, 0, 0}));
    CHECK_FALSE(decode_payload(1, 19, bytes{0, 0, 0, 0, 0, 0, 0, 1, 0}));
    // Unknown type and unknown version.
    CHECK_FALSE(decode_payload(1, 21, bytes{}));
    CHECK_FALSE(decode_payload(1, 99, bytes{}));
    CHECK_FALSE(decode_payload(2, 4, bytes{0, 0, 0, 0, 0, 0, 0, 0}));
    // A good record with one payload bit flipped fails its CRC.
    auto b = encode_record(session_record{"c1", 1});
    b.back() ^= 0x01;
    std::size_t size = 0;
    CHECK_FALSE(detail::record_at(b, 0, size));
}

TEST_CASE("store: replaying a log gives the live state") {
    const auto l = load_bytes(encode_all(sample_records()));
    CHECK(l.report.clean());
    CHECK(l.report.records == sample_records().size());
    REQUIRE(l.st.sessions().size() == 1);
    const auto& s = l.st.sessions().at("c1");
    CHECK(s.expiry_interval == 3600);
    CHECK(s.subscriptions.size() == 1);
    CHECK(s.queue.size() == 2);
    CHECK(l.st.retained().at("a/r") == 2);
    CHECK(l.st.messages().at(3).msg->payload == "two");
}

TEST_CASE("store: a message record under an id in use is ignored unless it is the same") {
    // Message 2 is retained under its topic a/r; a record giving id 2 another message (say
    // from another file's bytes) must not make a/r deliver it.
    auto rs = sample_records();
    rs.push_back(
        message_record{2, 1'700'000'000'200, make_msg("a/r", "kept", qos::at_most_once, true)});
    rs.push_back(message_record{2, 1'700'000'000'900, make_msg("x/y", "other")});
    rs.push_back(retained_set_record{2});
    const auto l = load_bytes(encode_all(rs));
    CHECK(l.report.rejected == 1);  // the other message; the same one again is fine
    CHECK(l.st.messages().at(2).msg->topic == "a/r");
    CHECK(l.st.messages().at(2).msg->payload == "kept");
    CHECK(l.st.retained().size() == 1);
    CHECK(l.st.retained().at("a/r") == 2);
    const auto again = load_bytes(encode_all(l.st.snapshot(0)));
    CHECK(again.report.clean());
    CHECK(snapshot_of(again.st) == snapshot_of(l.st));
}

TEST_CASE("store: a log cut at any byte of its last records keeps every whole record") {
    const auto rs = sample_records();
    const auto full = encode_all(rs);
    const auto off = offsets_of(rs);
    // Every cut inside the last three records.
    for (std::size_t cut = off[rs.size() - 3]; cut <= full.size(); ++cut) {
        CAPTURE(cut);
        const bytes torn(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
        const auto l = load_bytes(torn);
        std::size_t whole = 0;
        while (whole < rs.size() && off[whole + 1] <= cut) ++whole;
        CHECK(l.report.records == whole);
        if (cut == off[whole]) {
            CHECK(l.report.damaged.empty());
        } else {
            REQUIRE(l.report.damaged.size() == 1);
            CHECK(l.report.damaged[0] ==
                  damage{off[whole], cut - off[whole], damage_kind::torn_tail});
        }
        // Whatever survived is consistent: the queue holds only messages that are there.
        for (const auto& [id, s] : l.st.sessions()) {
            for (const auto& q : s.queue) CHECK(l.st.has_message(q.msg_id));
        }
    }
}

TEST_CASE("store: a group of records counts only with its commit record") {
    // Two groups as the broker writes them, each closed by a commit record; the second is
    // the routing of one QoS 2 PUBLISH: the message queued, then its packet id noted.
    std::vector<record> rs{
        header_record{format_version, 1'700'000'000'000},
        session_record{"sub", 3600},
        session_record{"pub", 3600},
        commit_record{},
        message_record{1, 1'700'000'000'100, make_msg("a/b", "one", qos::exactly_once)},
        queue_push_record{"sub", 1, qos::exactly_once, false, {}},
        qos2_in_add_record{"pub", 7},
        commit_record{},
    };
    const auto full = encode_all(rs);
    const auto off = offsets_of(rs);
    const auto whole = load_bytes(full);
    CHECK(whole.report.clean());
    CHECK(whole.report.records == rs.size());
    CHECK(whole.st.sessions().at("sub").queue.size() == 1);
    CHECK(whole.st.sessions().at("pub").qos2_in == std::vector<std::uint16_t>{7});
    // Cut anywhere before the second commit record is whole: none of that group's records
    // count (never the message without its packet id, which would route a resend again),
    // and the cut-off part is one torn tail from the group's first record.
    for (std::size_t cut = off[4]; cut < off[8]; ++cut) {
        CAPTURE(cut);
        const bytes torn(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
        const auto l = load_bytes(torn);
        CHECK(l.report.records == 4);
        CHECK(l.st.sessions().at("sub").queue.empty());
        CHECK(l.st.sessions().at("pub").qos2_in.empty());
        CHECK(l.st.messages().empty());
        if (cut == off[4]) {
            CHECK(l.report.damaged.empty());
        } else {
            REQUIRE(l.report.damaged.size() == 1);
            CHECK(l.report.damaged[0] == damage{off[4], cut - off[4], damage_kind::torn_tail});
        }
    }
    // A small snapshot is one group after its header's.
    const auto snap = snapshot_of(whole.st);
    CHECK(load_bytes(snap).report.clean());
    const bytes torn_snap(snap.begin(), snap.end() - 1);
    CHECK(load_bytes(torn_snap).st.sessions().empty());
    // A large one has a commit record every snapshot_group_records records, so that reading
    // it never holds back more than that (it is never torn: written anew, then renamed).
    state big;
    big.apply(session_record{"q", 60});
    for (std::uint64_t i = 1; i <= 3000; ++i) {
        big.apply(message_record{i, 1, make_msg("t", "m")});
        big.apply(queue_push_record{"q", i, qos::at_least_once, false, {}});
    }
    const auto records = big.snapshot(0);
    std::size_t since = 0;
    std::size_t most = 0;
    for (const auto& r : records) {
        since = std::holds_alternative<commit_record>(r) ? 0 : since + 1;
        most = std::max(most, since);
    }
    CHECK(most == snapshot_group_records);
    CHECK(std::holds_alternative<commit_record>(records.back()));
    const auto again = load_bytes(encode_all(records));
    CHECK(again.report.clean());
    CHECK(again.st.sessions().at("q").queue.size() == 3000);
}

TEST_CASE("store: a corrupt record in the middle is skipped and reading goes on") {
    const auto rs = sample_records();
    const auto off = offsets_of(rs);
    // Damage the retained message's record (index 5) in its header, its payload, its CRC.
    for (const std::size_t at : {off[5] + 1, off[5] + 6, off[5] + 9, off[5] + 20}) {
        CAPTURE(at);
        auto b = encode_all(rs);
        b[at] ^= 0x5A;
        const auto l = load_bytes(b);
        REQUIRE(l.report.damaged.size() == 1);
        CHECK(l.report.damaged[0] == damage{off[5], off[6] - off[5], damage_kind::corrupt});
        // retained_set then refers to a message the store does not have: ignored, counted.
        CHECK(l.report.records == rs.size() - 1);
        CHECK(l.report.rejected == 1);
        CHECK(l.st.retained().empty());
        CHECK(l.st.sessions().at("c1").queue.size() == 2);  // the records after it are there
    }
    SUBCASE("garbage inserted between records") {
        auto b = encode_all(rs);
        const bytes junk{0x54, 0x72, 0x01, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x54};
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(off[2]), junk.begin(), junk.end());
        const auto l = load_bytes(b);
        REQUIRE(l.report.damaged.size() == 1);
        CHECK(l.report.damaged[0] == damage{off[2], junk.size(), damage_kind::corrupt});
        CHECK(l.report.records == rs.size());
        CHECK(l.report.clean() == false);
    }
    SUBCASE("a file of garbage") {
        const bytes junk(100, 0x54);
        const auto l = load_bytes(junk);
        CHECK(l.report.records == 0);
        REQUIRE(l.report.damaged.size() == 1);
        CHECK(l.report.damaged[0] == damage{0, 100, damage_kind::torn_tail});
    }
}

TEST_CASE("store: load_file reads a chunk at a time and gives what load_bytes gives") {
    // Groups of messages of many sizes (one much larger than the small chunks below), a
    // corrupt stretch with a false record start in the middle, and a torn tail.
    bytes log = session_c_log();
    constexpr std::size_t large = 20'000;
    for (std::uint64_t i = 1; i <= 200; ++i) {
        const std::size_t n = i == 100 ? large : (i * 37) % 700;
        append_record(log, message_record{i, 1, make_msg("t", std::string(n, 'x'))});
        append_record(log, queue_push_record{"c", i, qos::at_least_once, false, {}});
        if (i % 3 == 0) append_record(log, commit_record{});
        if (i == 120) {  // magic, version, type, a length of 1000, then not that record
            const bytes junk{0x54, 0x72, 1, 8, 0, 0, 0x03, 0xE8, 1, 2, 3, 4, 0x54, 0x00, 0x72};
            log.insert(log.end(), junk.begin(), junk.end());
        }
    }
    append_record(log, commit_record{});
    const auto torn = encode_record(queue_push_record{"c", 1, qos::at_least_once, false, {}});
    log.insert(log.end(), torn.begin(), torn.end() - 3);
    const auto expected = load_bytes(log);
    REQUIRE(expected.report.damaged.size() == 2);
    CHECK(expected.report.damaged[0].kind == damage_kind::corrupt);
    CHECK(expected.report.damaged[1].kind == damage_kind::torn_tail);
    CHECK(expected.st.sessions().at("c").queue.size() == 200);

    const std::string path = write_temp_file(log, "chunks");
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{5}, std::size_t{64},
                                    std::size_t{4096}, std::size_t{1} << 20}) {
        CAPTURE(chunk);
        const auto l = load_file(path, nullptr, chunk);
        REQUIRE(l.has_value());
        CHECK(l->report.file_bytes == log.size());
        CHECK(l->report.records == expected.report.records);
        CHECK(l->report.damaged == expected.report.damaged);
        CHECK(snapshot_of(l->st) == snapshot_of(expected.st));
        // Never the whole file at once: about a chunk, or the largest record.
        if (chunk < log.size()) {
            CHECK(l->report.read_peak <= 2 * chunk + large + 100);
            CHECK(l->report.read_peak < log.size() / 2);
        }
    }
    std::remove(path.c_str());
}

TEST_CASE("store: a damaged length in a file read in chunks takes no room beyond the file") {
    // Record headers whose length says 200 MiB in the middle of a small file: reading it
    // through the window makes room for what the file holds, not for what they announce.
    bytes log = session_c_log();
    for (int i = 0; i < 3; ++i) {
        const bytes junk{0x54, 0x72, 1, 8, 0x0C, 0x80, 0x00, 0x00, 1, 2, 3, 4, 5, 6};
        log.insert(log.end(), junk.begin(), junk.end());
        append_record(log, session_record{"d" + std::to_string(i), 60});
        append_record(log, commit_record{});
    }
    const auto expected = load_bytes(log);
    REQUIRE(expected.report.damaged.size() == 3);
    CHECK(expected.st.sessions().size() == 4);

    const std::string path = write_temp_file(log, "length");
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{64}, std::size_t{4096}}) {
        CAPTURE(chunk);
        const auto l = load_file(path, nullptr, chunk);
        REQUIRE(l.has_value());
        CHECK(l->report.damaged == expected.report.damaged);
        CHECK(snapshot_of(l->st) == snapshot_of(expected.st));
        CHECK(l->report.read_peak <= log.size() + chunk);
    }
    std::remove(path.c_str());
}

TEST_CASE("store: compaction gives the same state as the log it replaces") {
    auto rs = sample_records();
    // Changes after the first records: delivered, removed, re-subscribed, QoS 2 state.
    rs.push_back(inflight_add_record{"c1", 10, 1, qos::at_least_once, false, stage::puback, {}});
    rs.push_back(queue_pop_record{"c1"});
    rs.push_back(qos2_in_add_record{"c1", 77});
    rs.push_back(qos2_in_add_record{"c1", 5});
    rs.push_back(qos2_in_remove_record{"c1", 77});
    rs.push_back(message_record{4, 1, make_msg("a/r", "newer", qos::at_most_once, true)});
    rs.push_back(retained_set_record{4});  // replaces message 2, which nobody holds now
    rs.push_back(session_record{"c2", 10});
    rs.push_back(message_record{5, 2, make_msg("w", "will")});
    rs.push_back(session_offline_record{"c2", 10, 5000, 5, 4000});
    rs.push_back(session_record{"gone", 10});
    rs.push_back(session_end_record{"gone"});
    const auto log = load_bytes(encode_all(rs));
    REQUIRE(log.report.clean());
    const auto snap = snapshot_of(log.st);
    const auto again = load_bytes(snap);
    CHECK(again.report.clean());
    CHECK(snapshot_of(again.st) == snap);
    CHECK(snap.size() < encode_all(rs).size());
    CHECK_FALSE(again.st.has_message(2));
    CHECK(again.st.sessions().size() == 2);
    const auto& c1 = again.st.sessions().at("c1");
    CHECK(c1.queue.size() == 1);
    CHECK(c1.inflight.size() == 1);
    CHECK(c1.qos2_in == std::vector<std::uint16_t>{5});
    const auto& c2 = again.st.sessions().at("c2");
    CHECK(c2.offline);
    CHECK(c2.will_msg_id == 5);
    CHECK(c2.will_ms == 4000);
}
