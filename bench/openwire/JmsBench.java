// One OpenWire benchmark run with ActiveMQ's own JMS client (bench/openwire.py drives it).
// Usage: java JmsBench <url> <user> <password> <mode> <count> <warmup> [rate]
//   sync:   persistent sends, each confirmed before the next (the JMS default)
//   window: persistent async sends under a 1 MB producer window (ProducerAck)
//   paced:  as window, at <rate> msg/s, for latency
// A consumer on its own connection receives (AUTO_ACKNOWLEDGE, prefetch 1000).
// Prints: RESULT <msg/s> <p50 ms> <p99 ms>
import javax.jms.*;
import org.apache.activemq.ActiveMQConnectionFactory;

public class JmsBench {
    public static void main(String[] a) throws Exception {
        String mode = a[3];
        int count = Integer.parseInt(a[4]);
        int warmup = Integer.parseInt(a[5]);
        double rate = a.length > 6 ? Double.parseDouble(a[6]) : 0;
        String url = a[0];
        if (!mode.equals("sync")) url += "?jms.useAsyncSend=true&jms.producerWindowSize=1024000";
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(a[1], a[2], url);
        Connection pc = f.createConnection();
        pc.start();
        Connection cc = f.createConnection();
        cc.start();
        Session ps = pc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Session cs = cc.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = ps.createQueue("bench.openwire." + mode);
        MessageConsumer consumer = cs.createConsumer(q);
        MessageProducer producer = ps.createProducer(q);
        producer.setDeliveryMode(DeliveryMode.PERSISTENT);
        byte[] body = new byte[1024];
        run(ps, producer, consumer, body, warmup, 0, new long[warmup]);
        long[] latencies = new long[count];
        long start = System.nanoTime();
        run(ps, producer, consumer, body, count, rate, latencies);
        double seconds = (System.nanoTime() - start) / 1e9;
        java.util.Arrays.sort(latencies);
        System.out.printf(java.util.Locale.ROOT, "RESULT %.1f %.3f %.3f%n", count / seconds,
            latencies[count / 2] / 1e6, latencies[Math.min(count - 1, count * 99 / 100)] / 1e6);
        pc.close();
        cc.close();
    }

    static void run(Session ps, MessageProducer producer, MessageConsumer consumer, byte[] body,
                    int count, double rate, long[] latencies) throws Exception {
        Thread receiver = new Thread(() -> {
            try {
                for (int i = 0; i < count; i++) {
                    Message m = consumer.receive(60000);
                    latencies[i] = System.nanoTime() - m.getLongProperty("sent");
                }
            } catch (Exception e) {
                e.printStackTrace();
                System.exit(2);
            }
        });
        receiver.start();
        long start = System.nanoTime();
        for (int i = 0; i < count; i++) {
            if (rate > 0) {
                long due = start + (long) (i * 1e9 / rate);
                while (System.nanoTime() < due) Thread.onSpinWait();
            }
            BytesMessage m = ps.createBytesMessage();
            m.writeBytes(body);
            m.setLongProperty("sent", System.nanoTime());
            producer.send(m);
        }
        receiver.join();
    }
}
