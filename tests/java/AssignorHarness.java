// Runs Kafka's real partition assignors on cases read from stdin, for tests/test_assignors.py.
//
//   java -cp "$(tools/kafka_jars.sh)/*" tests/java/AssignorHarness.java < cases.json
//
// Input: one JSON object {"cases": [case, ...]}, each case
//   {"strategy": "range" | "roundrobin" | "cooperative-sticky",
//    "partitions": [[topic, count], ...],
//    "members": [{"id": s, "instance": s|null, "topics": [s...], "owned": [[topic, p]...], "generation": n}]}
// Output: per case one stdout line "CASE <json>" with {"assignment": [[member, [[topic, p]...]]...]} and,
// for cooperative-sticky, "target": the same shape from the sticky algorithm before the cooperative
// adjustment; or {"error": "<exception>"} when Kafka throws.
//
// Members go into a java.util.HashMap in list order, as ConsumerCoordinator.onLeaderElected does, and
// the partition map holds only subscribed topics with partitions, as
// AbstractPartitionAssignor.assign(Cluster, GroupSubscription) builds it. A fresh assignor per case:
// AbstractStickyAssignor keeps the highest generation it has seen in a field.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.internals.AbstractPartitionAssignor;
import org.apache.kafka.clients.consumer.internals.AbstractStickyAssignor;
import org.apache.kafka.common.TopicPartition;

public class AssignorHarness {
    /** The sticky algorithm with cooperative-sticky's member data, without its final adjustment. */
    static final class TargetSticky extends AbstractStickyAssignor {
        @Override
        protected MemberData memberData(Subscription subscription) {
            return new MemberData(subscription.ownedPartitions(), subscription.generationId());
        }

        @Override
        public String name() {
            return "sticky-target";
        }
    }

    static ArrayNode encode(ObjectMapper mapper, Map<String, List<TopicPartition>> assignment) {
        ArrayNode out = mapper.createArrayNode();
        for (Map.Entry<String, List<TopicPartition>> entry : assignment.entrySet()) {
            ArrayNode member = out.addArray();
            member.add(entry.getKey());
            ArrayNode partitions = member.addArray();
            for (TopicPartition tp : entry.getValue()) {
                partitions.addArray().add(tp.topic()).add(tp.partition());
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = new ObjectMapper();
        JsonNode root = mapper.readTree(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)));
        StringBuilder out = new StringBuilder();
        for (JsonNode c : root.get("cases")) {
            Map<String, Subscription> subscriptions = new HashMap<>();
            Set<String> subscribed = new HashSet<>();
            for (JsonNode m : c.get("members")) {
                List<String> topics = new ArrayList<>();
                m.get("topics").forEach(t -> topics.add(t.asText()));
                subscribed.addAll(topics);
                List<TopicPartition> owned = new ArrayList<>();
                m.get("owned").forEach(tp -> owned.add(new TopicPartition(tp.get(0).asText(), tp.get(1).asInt())));
                Subscription s = new Subscription(topics, null, owned, m.get("generation").asInt(), Optional.empty());
                JsonNode instance = m.get("instance");
                s.setGroupInstanceId(instance == null || instance.isNull() ? Optional.empty() : Optional.of(instance.asText()));
                subscriptions.put(m.get("id").asText(), s);
            }
            Map<String, Integer> partitionsPerTopic = new HashMap<>();
            for (JsonNode p : c.get("partitions")) {
                String topic = p.get(0).asText();
                int count = p.get(1).asInt();
                if (subscribed.contains(topic) && count > 0) partitionsPerTopic.put(topic, count);
            }
            String strategy = c.get("strategy").asText();
            ObjectNode result = mapper.createObjectNode();
            try {
                AbstractPartitionAssignor assignor;
                switch (strategy) {
                    case "range": assignor = new RangeAssignor(); break;
                    case "roundrobin": assignor = new RoundRobinAssignor(); break;
                    case "cooperative-sticky": assignor = new CooperativeStickyAssignor(); break;
                    default: throw new IllegalArgumentException("unknown strategy " + strategy);
                }
                result.set("assignment", encode(mapper, assignor.assign(partitionsPerTopic, subscriptions)));
                if (strategy.equals("cooperative-sticky")) {
                    result.set("target", encode(mapper, new TargetSticky().assign(partitionsPerTopic, subscriptions)));
                }
            } catch (Exception e) {
                result.put("error", e.toString());
            }
            out.append("CASE ").append(mapper.writeValueAsString(result)).append('\n');
        }
        System.out.print(out);
        System.out.flush();
    }
}
