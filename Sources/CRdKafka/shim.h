#ifndef TOPSAIL_CRDKAFKA_SHIM_H
#define TOPSAIL_CRDKAFKA_SHIM_H
// librdkafka's C API, plus two helpers for what Swift cannot call directly (varargs, unions).
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

/// Enqueues one message, copying key and value. On success librdkafka owns `headers`.
static inline rd_kafka_resp_err_t topsail_produce(rd_kafka_t *rk, const char *topic,
                                                  const void *key, size_t key_len,
                                                  const void *value, size_t value_len,
                                                  rd_kafka_headers_t *headers, void *opaque) {
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}

/// Creates one topic and waits for the answer (blocking, at most `timeout_ms`).
/// Returns the topic's error code; a topic that already exists is not an error.
static inline rd_kafka_resp_err_t topsail_create_topic(rd_kafka_t *rk, const char *topic,
                                                       int partitions, int replication_factor,
                                                       int timeout_ms, char *errstr,
                                                       size_t errstr_size) {
    rd_kafka_NewTopic_t *new_topic =
        rd_kafka_NewTopic_new(topic, partitions, replication_factor, errstr, errstr_size);
    if (!new_topic) return RD_KAFKA_RESP_ERR__INVALID_ARG;
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, errstr_size);
    rd_kafka_CreateTopics(rk, &new_topic, 1, options, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, timeout_ms + 1000);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    snprintf(errstr, errstr_size, "no answer to CreateTopics within %d ms", timeout_ms);
    if (event) {
        err = rd_kafka_event_error(event);
        if (err) {
            snprintf(errstr, errstr_size, "%s", rd_kafka_event_error_string(event));
        } else {
            const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result(event);
            size_t count = 0;
            const rd_kafka_topic_result_t **topics =
                result ? rd_kafka_CreateTopics_result_topics(result, &count) : NULL;
            err = count > 0 ? rd_kafka_topic_result_error(topics[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
            const char *text = count > 0 ? rd_kafka_topic_result_error_string(topics[0]) : NULL;
            snprintf(errstr, errstr_size, "%s", text ? text : rd_kafka_err2str(err));
            if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        rd_kafka_event_destroy(event);
    }
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    rd_kafka_NewTopic_destroy(new_topic);
    return err;
}

#endif
