// The MQTT-SN gateway's Will updates (MQTT-SN 1.2, 5.4.22 to 5.4.25): WILLTOPICUPD and
// WILLMSGUPD change the Will held by the client's broker session, which publishes it when
// the client is lost, as for the Will given at CONNECT.

#include "mqtt/broker/mqttsn_gateway.hpp"
#include "mqtt/protocol/topic.hpp"

namespace mqtt::broker {
namespace sn = protocol::mqttsn;

void mqttsn_client::on_willtopicupd(sn::willtopicupd&& u) {
    if (u.topic.empty()) {
        // The two-octet WILLTOPICUPD: the Will topic and message are deleted.
        const bool ok = session_.replace_will(std::nullopt);
        will_message_only_.reset();
        return send(
            sn::willtopicresp{ok ? sn::return_code::accepted : sn::return_code::not_supported});
    }
    // The Will is published as a PUBLISH of this client: a topic name (no wildcards) and a
    // QoS of 0, 1 or 2 (-1 has no meaning for a Will).
    if (u.qos == sn::qos::minus_one || !protocol::is_valid_topic_name(u.topic))
        return send(sn::willtopicresp{sn::return_code::not_supported});
    protocol::will_message w;
    w.topic = std::move(u.topic);
    w.qos_level = static_cast<protocol::qos>(u.qos);
    w.retain = u.retain;
    // The Will message stays what it was (5.4.22 changes only the topic and its flags).
    if (const auto* ds = session_.durable(); ds != nullptr && ds->will()) {
        w.payload = ds->will()->payload;
    } else if (will_message_only_) {
        w.payload = *will_message_only_;
    }
    const bool ok = session_.replace_will(std::move(w));
    if (ok) will_message_only_.reset();
    send(sn::willtopicresp{ok ? sn::return_code::accepted : sn::return_code::not_supported});
}

void mqttsn_client::on_willmsgupd(sn::willmsgupd&& u) {
    const auto* ds = session_.durable();
    if (ds == nullptr) return send(sn::willmsgresp{sn::return_code::not_supported});
    if (!ds->will()) {
        // No Will topic yet: kept for the next WILLTOPICUPD (a Will needs a topic).
        will_message_only_ = std::move(u.message);
        return send(sn::willmsgresp{sn::return_code::accepted});
    }
    protocol::will_message w;
    w.topic = ds->will()->topic;
    w.qos_level = ds->will()->qos_level;
    w.retain = ds->will()->retain;
    w.payload = std::move(u.message);
    const bool ok = session_.replace_will(std::move(w));
    send(sn::willmsgresp{ok ? sn::return_code::accepted : sn::return_code::not_supported});
}

}  // namespace mqtt::broker
