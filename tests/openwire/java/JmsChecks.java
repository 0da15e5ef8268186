// The JMS client's view of sealmq: each named check runs against the broker URL given
// and prints "OK <name>" or "FAIL <name>: <why>"; tests/openwire asserts on the lines.
// Usage: java JmsChecks <url> <user> <password> <check>...
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQSession;
import org.apache.activemq.RedeliveryPolicy;

public class JmsChecks {
    static final long WAIT = Long.getLong("wait", 10000);
    static String url, user, password;

    interface Check { void run(String name) throws Exception; }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Connection connect(String clientId) throws JMSException {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, url);
        Connection c = f.createConnection();
        if (clientId != null) c.setClientID(clientId);
        c.start();
        return c;
    }

    static TextMessage text(Session s, String body) throws JMSException {
        return s.createTextMessage(body);
    }

    static String body(Message m) throws JMSException {
        check(m != null, "no message received");
        return ((TextMessage) m).getText();
    }

    // ------------------------------------------------------------- checks

    static void queueAuto(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            p.send(text(s, "hello"));
            p.setDeliveryMode(DeliveryMode.NON_PERSISTENT);
            p.send(text(s, "fast"));
            MessageConsumer consumer = s.createConsumer(q);
            check("hello".equals(body(consumer.receive(WAIT))), "first body");
            check("fast".equals(body(consumer.receive(WAIT))), "second body");
            consumer.close();
            // Acknowledged: a new consumer finds nothing.
            MessageConsumer again = s.createConsumer(q);
            check(again.receive(300) == null, "an auto-acknowledged message came back");
        } finally {
            c.close();
        }
    }

    static void topicPubSub(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Topic t = s.createTopic(name);
            MessageConsumer a = s.createConsumer(t);
            MessageConsumer b = s.createConsumer(t);
            MessageProducer p = s.createProducer(t);
            p.send(text(s, "news"));
            check("news".equals(body(a.receive(WAIT))), "first subscriber");
            check("news".equals(body(b.receive(WAIT))), "second subscriber");
        } finally {
            c.close();
        }
    }

    static void clientAck(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 3; i++) p.send(text(s, "m" + i));
            MessageConsumer consumer = s.createConsumer(q);
            Message m0 = consumer.receive(WAIT);
            Message m1 = consumer.receive(WAIT);
            check("m1".equals(body(m1)), "order");
            m1.acknowledge(); // acknowledges m0 and m1
            Message m2 = consumer.receive(WAIT);
            check("m2".equals(body(m2)), "third");
            s.recover(); // m2 again, redelivered
            Message again = consumer.receive(WAIT);
            check("m2".equals(body(again)), "recovered body");
            check(again.getJMSRedelivered(), "JMSRedelivered after recover");
            check(again.getIntProperty("JMSXDeliveryCount") == 2, "JMSXDeliveryCount 2");
            again.acknowledge();
            consumer.close();
            MessageConsumer after = s.createConsumer(q);
            check(after.receive(300) == null, "an acknowledged message came back");
        } finally {
            c.close();
        }
    }

    static void clientAckClosedRedelivers(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            s.createProducer(q).send(text(s, "unacked"));
            MessageConsumer consumer = s.createConsumer(q);
            check("unacked".equals(body(consumer.receive(WAIT))), "first");
            consumer.close(); // not acknowledged: back to the queue
            MessageConsumer next = s.createConsumer(q);
            Message m = next.receive(WAIT);
            check("unacked".equals(body(m)), "redelivered to the next consumer");
            check(m.getJMSRedelivered(), "marked redelivered");
            m.acknowledge();
        } finally {
            c.close();
        }
    }

    static void dupsOk(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.DUPS_OK_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 20; i++) p.send(text(s, "d" + i));
            MessageConsumer consumer = s.createConsumer(q);
            for (int i = 0; i < 20; i++) check(("d" + i).equals(body(consumer.receive(WAIT))), "dups-ok " + i);
        } finally {
            c.close();
        }
        Connection c2 = connect(null);
        try {
            Session s = c2.createSession(false, Session.AUTO_ACKNOWLEDGE);
            check(s.createConsumer(s.createQueue(name)).receive(500) == null, "dups-ok messages came back");
        } finally {
            c2.close();
        }
    }

    static void individualAck(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, ActiveMQSession.INDIVIDUAL_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 3; i++) p.send(text(s, "i" + i));
            MessageConsumer consumer = s.createConsumer(q);
            Message m0 = consumer.receive(WAIT);
            Message m1 = consumer.receive(WAIT);
            Message m2 = consumer.receive(WAIT);
            m1.acknowledge(); // only m1
            consumer.close();
            MessageConsumer next = s.createConsumer(q);
            check("i0".equals(body(next.receive(WAIT))), "i0 back");
            check("i2".equals(body(next.receive(WAIT))), "i2 back");
            check(next.receive(300) == null, "i1 came back");
        } finally {
            c.close();
        }
    }

    static void transacted(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(true, Session.SESSION_TRANSACTED);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            MessageConsumer consumer = s.createConsumer(q);
            p.send(text(s, "rolled-back"));
            s.rollback();
            check(consumer.receive(300) == null, "a rolled-back send arrived");
            p.send(text(s, "committed"));
            check(consumer.receive(300) == null, "an uncommitted send arrived");
            s.commit();
            Message m = consumer.receive(WAIT);
            check("committed".equals(body(m)), "committed send");
            s.rollback(); // the receive is undone: redelivered
            Message again = consumer.receive(WAIT);
            check("committed".equals(body(again)), "redelivered after rollback");
            check(again.getJMSRedelivered(), "marked redelivered");
            s.commit();
            check(consumer.receive(300) == null, "a committed receive came back");
        } finally {
            c.close();
        }
    }

    static void deadLetter(String name) throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, url);
        RedeliveryPolicy policy = new RedeliveryPolicy();
        policy.setMaximumRedeliveries(2);
        policy.setInitialRedeliveryDelay(0);
        policy.setRedeliveryDelay(0);
        f.setRedeliveryPolicy(policy);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(true, Session.SESSION_TRANSACTED);
            Queue q = s.createQueue(name);
            s.createProducer(q).send(text(s, "poison"));
            s.commit();
            MessageConsumer consumer = s.createConsumer(q);
            for (int i = 0; i < 3; i++) {
                check("poison".equals(body(consumer.receive(WAIT))), "delivery " + i);
                s.rollback();
            }
            check(consumer.receive(500) == null, "delivered past the maximum");
            consumer.close();
            MessageConsumer dlq = s.createConsumer(s.createQueue("ActiveMQ.DLQ"));
            Message dead = dlq.receive(WAIT);
            check("poison".equals(body(dead)), "in the DLQ");
            s.commit();
        } finally {
            c.close();
        }
    }

    static void wrongPassword(String name) throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password + "-wrong", url);
        try {
            Connection c = f.createConnection();
            c.start();
            c.close();
            throw new AssertionError("connected with a wrong password");
        } catch (JMSSecurityException expected) {
            // as ActiveMQ
        }
    }

    static void durable(String name) throws Exception {
        String clientId = "durable-" + name;
        Connection c = connect(clientId);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Topic t = s.createTopic(name);
            s.createDurableSubscriber(t, "sub").close(); // offline from now on
            MessageProducer p = s.createProducer(t);
            p.send(text(s, "while-away-1"));
            p.send(text(s, "while-away-2"));
            TopicSubscriber back = s.createDurableSubscriber(t, "sub");
            check("while-away-1".equals(body(back.receive(WAIT))), "first kept");
            check("while-away-2".equals(body(back.receive(WAIT))), "second kept");
            back.close();
            s.unsubscribe("sub");
            p.send(text(s, "after-unsubscribe"));
            TopicSubscriber fresh = s.createDurableSubscriber(t, "sub");
            check(fresh.receive(300) == null, "an unsubscribed subscription kept messages");
            fresh.close();
        } finally {
            c.close();
        }
    }

    // Phase 1 of a durable subscription across a broker restart: subscribe, go offline.
    static void durableSubscribe(String name) throws Exception {
        Connection c = connect("restart-" + name);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            s.createDurableSubscriber(s.createTopic(name), "sub").close();
        } finally {
            c.close();
        }
    }

    static void publishPersistent(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createTopic(name));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 5; i++) p.send(text(s, "kept-" + i));
        } finally {
            c.close();
        }
    }

    static void durableReceive(String name) throws Exception {
        Connection c = connect("restart-" + name);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TopicSubscriber sub = s.createDurableSubscriber(s.createTopic(name), "sub");
            for (int i = 0; i < 5; i++) check(("kept-" + i).equals(body(sub.receive(WAIT))), "kept " + i);
            check(sub.receive(300) == null, "more than was sent");
        } finally {
            c.close();
        }
    }

    static void sendPersistent(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue(name));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 100; i++) p.send(text(s, "durable-" + i)); // each confirmed
        } finally {
            c.close();
        }
    }

    static void receivePersistent(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(name));
            for (int i = 0; i < 100; i++) check(("durable-" + i).equals(body(consumer.receive(WAIT))), "durable " + i);
            check(consumer.receive(300) == null, "more than was sent");
        } finally {
            c.close();
        }
    }

    static void selectors(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (String color : new String[] {"blue", "red", "green", "red"}) {
                TextMessage m = text(s, color);
                m.setStringProperty("color", color);
                m.setIntProperty("weight", color.length());
                p.send(m);
            }
            MessageConsumer red = s.createConsumer(q, "color = 'red' AND weight < 5");
            check("red".equals(body(red.receive(WAIT))), "first red");
            check("red".equals(body(red.receive(WAIT))), "second red");
            check(red.receive(300) == null, "a selected-out message");
            red.close();
            MessageConsumer rest = s.createConsumer(q);
            check("blue".equals(body(rest.receive(WAIT))), "blue left");
            check("green".equals(body(rest.receive(WAIT))), "green left");
            try {
                s.createConsumer(q, "color = ");
                throw new AssertionError("a bad selector was accepted");
            } catch (InvalidSelectorException expected) {
                // as ActiveMQ
            }
        } finally {
            c.close();
        }
    }

    static void messageTypes(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            Queue replies = s.createQueue(name + ".replies");
            MessageProducer p = s.createProducer(q);
            TextMessage t = s.createTextMessage("h\u00e9llo \u2603 \ud83d\ude00 \u0000 end");
            t.setJMSCorrelationID("corr-1");
            t.setJMSType("greeting");
            t.setJMSReplyTo(replies);
            t.setBooleanProperty("b", true);
            t.setByteProperty("y", (byte) -7);
            t.setShortProperty("s", (short) 300);
            t.setIntProperty("i", 70000);
            t.setLongProperty("l", 1L << 40);
            t.setFloatProperty("f", 1.5f);
            t.setDoubleProperty("d", 2.25);
            t.setStringProperty("str", "v\u00e4lue");
            t.setStringProperty("JMSXGroupID", "g1");
            t.setIntProperty("JMSXGroupSeq", 3);
            p.send(t, DeliveryMode.PERSISTENT, 7, 60000);
            String sentId = t.getJMSMessageID();
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(new byte[] {0, 1, 2, (byte) 255});
            p.send(b, DeliveryMode.NON_PERSISTENT, 4, 0);
            MapMessage m = s.createMapMessage();
            m.setString("name", "x");
            m.setInt("n", 42);
            m.setBoolean("ok", true);
            m.setBytes("raw", new byte[] {9, 8});
            m.setDouble("pi", 3.5);
            p.send(m);
            StreamMessage st = s.createStreamMessage();
            st.writeString("one");
            st.writeLong(2L);
            st.writeBoolean(false);
            p.send(st);
            ObjectMessage o = s.createObjectMessage("serialised");
            p.send(o);
            Message plain = s.createMessage();
            plain.setStringProperty("only", "headers");
            p.send(plain);

            MessageConsumer consumer = s.createConsumer(q);
            TextMessage rt = (TextMessage) consumer.receive(WAIT);
            check(rt != null, "text received");
            check(t.getText().equals(rt.getText()), "text body " + rt.getText());
            check(sentId.equals(rt.getJMSMessageID()), "JMSMessageID " + rt.getJMSMessageID() + " != " + sentId);
            check("corr-1".equals(rt.getJMSCorrelationID()), "JMSCorrelationID");
            check("greeting".equals(rt.getJMSType()), "JMSType");
            check(replies.equals(rt.getJMSReplyTo()), "JMSReplyTo " + rt.getJMSReplyTo());
            check(q.equals(rt.getJMSDestination()), "JMSDestination");
            check(rt.getJMSDeliveryMode() == DeliveryMode.PERSISTENT, "JMSDeliveryMode");
            check(rt.getJMSPriority() == 7, "JMSPriority");
            check(rt.getJMSExpiration() > System.currentTimeMillis(), "JMSExpiration");
            check(Math.abs(rt.getJMSTimestamp() - System.currentTimeMillis()) < 60000, "JMSTimestamp");
            check(!rt.getJMSRedelivered(), "JMSRedelivered");
            check(rt.getIntProperty("JMSXDeliveryCount") == 1, "JMSXDeliveryCount");
            check(rt.getBooleanProperty("b"), "boolean property");
            check(rt.getObjectProperty("y").equals((byte) -7), "byte property");
            check(rt.getObjectProperty("s").equals((short) 300), "short property");
            check(rt.getObjectProperty("i").equals(70000), "int property");
            check(rt.getObjectProperty("l").equals(1L << 40), "long property");
            check(rt.getObjectProperty("f").equals(1.5f), "float property");
            check(rt.getObjectProperty("d").equals(2.25), "double property");
            check("v\u00e4lue".equals(rt.getStringProperty("str")), "string property");
            check("g1".equals(rt.getStringProperty("JMSXGroupID")), "JMSXGroupID");
            check(rt.getIntProperty("JMSXGroupSeq") == 3, "JMSXGroupSeq");

            BytesMessage rb = (BytesMessage) consumer.receive(WAIT);
            byte[] raw = new byte[4];
            check(rb.getBodyLength() == 4 && rb.readBytes(raw) == 4 && raw[3] == (byte) 255, "bytes body");
            check(rb.getJMSDeliveryMode() == DeliveryMode.NON_PERSISTENT, "non-persistent");
            check(rb.getJMSExpiration() == 0, "no expiration");

            MapMessage rm = (MapMessage) consumer.receive(WAIT);
            check("x".equals(rm.getString("name")) && rm.getInt("n") == 42 && rm.getBoolean("ok"), "map body");
            check(rm.getBytes("raw").length == 2 && rm.getDouble("pi") == 3.5, "map bytes, double");
            StreamMessage rs = (StreamMessage) consumer.receive(WAIT);
            check("one".equals(rs.readString()) && rs.readLong() == 2L && !rs.readBoolean(), "stream body");
            ObjectMessage ro = (ObjectMessage) consumer.receive(WAIT);
            check("serialised".equals(ro.getObject()), "object body");
            Message rp = consumer.receive(WAIT);
            check(rp != null && !(rp instanceof TextMessage) && !(rp instanceof BytesMessage), "plain message");
            check("headers".equals(rp.getStringProperty("only")), "plain message property");
        } finally {
            c.close();
        }
    }

    static void priority(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int prio = 0; prio <= 9; prio++) p.send(text(s, "p" + prio), DeliveryMode.PERSISTENT, prio, 0);
            MessageConsumer consumer = s.createConsumer(q);
            for (int prio = 9; prio >= 0; prio--) {
                Message m = consumer.receive(WAIT);
                check(m.getJMSPriority() == prio, "priority " + prio + " came as " + m.getJMSPriority());
            }
        } finally {
            c.close();
        }
    }

    static void timeToLive(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            p.setTimeToLive(50);
            p.send(text(s, "short-lived"));
            p.setTimeToLive(60000);
            p.send(text(s, "long-lived"));
            Thread.sleep(200); // past the first one's time to live
            MessageConsumer consumer = s.createConsumer(q);
            Message m = consumer.receive(WAIT);
            check("long-lived".equals(body(m)), "the expired one was delivered");
            check(m.getJMSExpiration() > System.currentTimeMillis(), "JMSExpiration");
        } finally {
            c.close();
        }
    }

    static void requestReply(String name) throws Exception {
        Connection server = connect(null);
        Connection client = connect(null);
        try {
            Session ss = server.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer requests = ss.createConsumer(ss.createQueue(name));
            MessageProducer replier = ss.createProducer(null);
            Session cs = client.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TemporaryQueue replies = cs.createTemporaryQueue();
            MessageConsumer answers = cs.createConsumer(replies);
            TextMessage request = cs.createTextMessage("ping");
            request.setJMSReplyTo(replies);
            request.setJMSCorrelationID("r1");
            cs.createProducer(cs.createQueue(name)).send(request);
            Message got = requests.receive(WAIT);
            check("ping".equals(body(got)), "request");
            check(replies.equals(got.getJMSReplyTo()), "reply-to " + got.getJMSReplyTo());
            TextMessage reply = ss.createTextMessage("pong");
            reply.setJMSCorrelationID(got.getJMSCorrelationID());
            replier.send(got.getJMSReplyTo(), reply);
            Message answer = answers.receive(WAIT);
            check("pong".equals(body(answer)), "reply");
            check("r1".equals(answer.getJMSCorrelationID()), "correlation");
            TemporaryTopic events = cs.createTemporaryTopic();
            MessageConsumer listener = cs.createConsumer(events);
            ss.createProducer(events).send(ss.createTextMessage("event"));
            check("event".equals(body(listener.receive(WAIT))), "temporary topic");
            answers.close();
            replies.delete();
            try {
                replier.send(replies, ss.createTextMessage("too late"));
                throw new AssertionError("sent to a deleted temporary queue");
            } catch (JMSException expected) {
                // refused by the client (the removal's advisory came) or by the broker
            }
        } finally {
            client.close();
            server.close();
        }
    }

    static void browser(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 3; i++) p.send(text(s, "b" + i));
            QueueBrowser browser = s.createBrowser(q);
            Enumeration<?> e = browser.getEnumeration();
            List<String> seen = new ArrayList<>();
            while (e.hasMoreElements()) seen.add(((TextMessage) e.nextElement()).getText());
            check(seen.size() == 3 && seen.get(0).equals("b0"), "browsed " + seen);
            browser.close();
            MessageConsumer consumer = s.createConsumer(q);
            for (int i = 0; i < 3; i++) check(("b" + i).equals(body(consumer.receive(WAIT))), "still there " + i);
        } finally {
            c.close();
        }
    }

    static void prefetchZero(String name) throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, url);
        f.getPrefetchPolicy().setAll(0);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageConsumer consumer = s.createConsumer(q);
            check(consumer.receiveNoWait() == null, "receiveNoWait on an empty queue");
            check(consumer.receive(200) == null, "receive(200) on an empty queue");
            MessageProducer p = s.createProducer(q);
            p.send(text(s, "z1"));
            p.send(text(s, "z2"));
            check("z1".equals(body(consumer.receive(WAIT))), "pulled z1");
            check("z2".equals(body(consumer.receive(WAIT))), "pulled z2");
        } finally {
            c.close();
        }
    }

    static void asyncWindow(String name) throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, url);
        f.setUseAsyncSend(true);
        f.setProducerWindowSize(4096); // a few messages: ProducerAcks must come back
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 200; i++) p.send(text(s, "w" + i));
            MessageConsumer consumer = s.createConsumer(q);
            for (int i = 0; i < 200; i++) check(("w" + i).equals(body(consumer.receive(WAIT))), "windowed " + i);
        } finally {
            c.close();
        }
    }

    // Cross-protocol: what a STOMP client sent, as JMS sees it (see test_openwire_jms.py).
    static void fromStomp(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(name));
            Message noLength = consumer.receive(WAIT);
            check(noLength instanceof TextMessage, "no content-length: a TextMessage, got " + noLength);
            check("stomp text".equals(((TextMessage) noLength).getText()), "text");
            check("v1".equals(noLength.getStringProperty("custom")), "a STOMP header as a property");
            Message withLength = consumer.receive(WAIT);
            check(withLength instanceof BytesMessage, "content-length: a BytesMessage, got " + withLength);
            BytesMessage b = (BytesMessage) withLength;
            byte[] raw = new byte[(int) b.getBodyLength()];
            b.readBytes(raw);
            check(new String(raw, "UTF-8").equals("stomp bytes"), "bytes");
        } finally {
            c.close();
        }
    }

    static void toStomp(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue(name));
            TextMessage t = s.createTextMessage("jms text \u00e9");
            t.setStringProperty("custom", "v2");
            t.setIntProperty("number", 5);
            t.setJMSCorrelationID("c-9");
            p.send(t);
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(new byte[] {0, 10, (byte) 200});
            p.send(b);
        } finally {
            c.close();
        }
    }

    static void compressed(String name) throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, url);
        f.setUseCompression(true);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            StringBuilder long_ = new StringBuilder();
            for (int i = 0; i < 200; i++) long_.append("compressible ");
            p.send(s.createTextMessage(long_.toString()));
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(long_.toString().getBytes("UTF-8"));
            p.send(b);
            MessageConsumer consumer = s.createConsumer(s.createQueue(name + ".back"));
            check(long_.toString().equals(body(consumer.receive(WAIT))), "the text STOMP sent back");
        } finally {
            c.close();
        }
    }

    static void xaRefused(String name) throws Exception {
        org.apache.activemq.ActiveMQXAConnectionFactory f =
            new org.apache.activemq.ActiveMQXAConnectionFactory(user, password, url);
        XAConnection c = f.createXAConnection();
        c.start();
        try {
            XASession s = c.createXASession();
            javax.transaction.xa.XAResource resource = s.getXAResource();
            javax.transaction.xa.Xid xid = new javax.transaction.xa.Xid() {
                public int getFormatId() { return 1; }
                public byte[] getGlobalTransactionId() { return new byte[] {1, 2, 3}; }
                public byte[] getBranchQualifier() { return new byte[] {4}; }
            };
            try {
                // The client sends its begin one-way; the end waits for an answer.
                resource.start(xid, javax.transaction.xa.XAResource.TMNOFLAGS);
                resource.end(xid, javax.transaction.xa.XAResource.TMSUCCESS);
                resource.prepare(xid);
                throw new AssertionError("an XA transaction was prepared");
            } catch (javax.transaction.xa.XAException expected) {
                String why = String.valueOf(expected.getMessage()) + " " + String.valueOf(expected.getCause());
                check(why.contains("not supported"), "the refusal says why: " + why);
            }
        } finally {
            c.close();
        }
    }

    static void duplicateClientId(String name) throws Exception {
        Connection first = connect("dup-" + name);
        try {
            connect("dup-" + name).close();
            throw new AssertionError("two connections with one client id");
        } catch (InvalidClientIDException expected) {
            // as ActiveMQ
        } finally {
            first.close();
        }
    }

    // With the test: prints RESTART once it has a message through, then waits for a
    // line on stdin (the broker has been restarted) and goes on through failover:.
    static void failover(String name) throws Exception {
        String failoverUrl = "failover:(" + url + ")?initialReconnectDelay=50&maxReconnectDelay=200"
            + "&maxReconnectAttempts=200&startupMaxReconnectAttempts=5";
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(user, password, failoverUrl);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            MessageProducer p = s.createProducer(q);
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            MessageConsumer consumer = s.createConsumer(q);
            p.send(text(s, "before"));
            check("before".equals(body(consumer.receive(WAIT))), "before the restart");
            System.out.println("RESTART");
            System.out.flush();
            new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();
            p.send(text(s, "after")); // waits for the reconnection
            check("after".equals(body(consumer.receive(WAIT))), "after the restart");
        } finally {
            c.close();
        }
    }

    static void mqttSubscribe(String name) throws Exception {
        Connection c = connect("mqtt-" + name);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            s.createDurableSubscriber(s.createTopic(name), "sub").close();
        } finally {
            c.close();
        }
    }

    // Cross-protocol: what an MQTT client published while the subscription was offline.
    static void fromMqtt(String name) throws Exception {
        Connection c = connect("mqtt-" + name);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TopicSubscriber sub = s.createDurableSubscriber(s.createTopic(name), "sub");
            Message m = sub.receive(WAIT);
            check(m instanceof BytesMessage, "an MQTT payload is a BytesMessage, got " + m);
            BytesMessage b = (BytesMessage) m;
            byte[] raw = new byte[(int) b.getBodyLength()];
            b.readBytes(raw);
            check(new String(raw, "UTF-8").equals("mqtt payload"), "payload");
            check(m.getJMSDeliveryMode() == DeliveryMode.PERSISTENT, "QoS 1 is persistent");
            check("from-mqtt".equals(m.getStringProperty("origin")), "a user property");
        } finally {
            c.close();
        }
    }

    static void toMqtt(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createTopic(name));
            TextMessage t = s.createTextMessage("jms to mqtt");
            t.setStringProperty("origin", "from-jms");
            p.send(t);
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(new byte[] {1, 2, 3});
            p.send(b);
        } finally {
            c.close();
        }
    }

    // As user "reader" (tests/integration/test_openwire_jms.py): reads orders.>, writes nothing.
    static void authorization(String name) throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(name);
            s.createConsumer(q).close(); // reading is allowed
            try {
                s.createProducer(q);
                throw new AssertionError("a producer without write permission");
            } catch (JMSSecurityException expected) {
                check(expected.getMessage().contains("not authorized to write"), expected.getMessage());
            }
            MessageProducer anonymous = s.createProducer(null);
            try {
                anonymous.send(q, s.createTextMessage("forbidden"));
                throw new AssertionError("a send without write permission");
            } catch (JMSSecurityException expected) {
                // as ActiveMQ
            }
            try {
                s.createConsumer(s.createQueue("secret." + name));
                throw new AssertionError("a consumer without read permission");
            } catch (JMSSecurityException expected) {
                check(expected.getMessage().contains("not authorized to read"), expected.getMessage());
            }
        } finally {
            c.close();
        }
    }

    static void consumerOptions(String name) throws Exception {
        Connection c = connect(null);
        Connection other = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            // No-local: a topic consumer does not get its own connection's messages.
            Topic t = s.createTopic(name);
            MessageConsumer noLocal = s.createConsumer(t, null, true);
            s.createProducer(t).send(text(s, "own"));
            Session os = other.createSession(false, Session.AUTO_ACKNOWLEDGE);
            os.createProducer(t).send(text(os, "theirs"));
            check("theirs".equals(body(noLocal.receive(WAIT))), "no-local");
            // Exclusive: one consumer gets everything while it lives.
            Queue q = s.createQueue(name + ".exclusive?consumer.exclusive=true");
            MessageConsumer first = s.createConsumer(q);
            MessageConsumer second = os.createConsumer(os.createQueue(name + ".exclusive?consumer.exclusive=true"));
            MessageProducer p = s.createProducer(s.createQueue(name + ".exclusive"));
            for (int i = 0; i < 4; i++) p.send(text(s, "x" + i));
            for (int i = 0; i < 4; i++) check(("x" + i).equals(body(first.receive(WAIT))), "exclusive " + i);
            check(second.receive(200) == null, "the second exclusive consumer received");
            first.close();
            p.send(text(s, "after"));
            check("after".equals(body(second.receive(WAIT))), "the next exclusive consumer takes over");
            // A message group sticks to one consumer.
            Queue g = s.createQueue(name + ".groups");
            MessageConsumer ga = s.createConsumer(g);
            MessageConsumer gb = os.createConsumer(os.createQueue(name + ".groups"));
            MessageProducer gp = s.createProducer(g);
            for (int i = 0; i < 6; i++) {
                TextMessage m = text(s, "g" + i);
                m.setStringProperty("JMSXGroupID", "one-group");
                gp.send(m);
            }
            int a = 0, b = 0;
            for (int i = 0; i < 6; i++) {
                Message m = ga.receive(300);
                if (m != null) a++; else if (gb.receive(WAIT) != null) b++;
            }
            check((a == 6 && b == 0) || (a == 0 && b == 6), "a group went to both consumers: " + a + "/" + b);
        } finally {
            other.close();
            c.close();
        }
    }

    // ------------------------------------------------------------- main

    public static void main(String[] args) throws Exception {
        try {
            runAll(args);
        } finally {
            System.exit(0);
        }
    }

    static void runAll(String[] args) throws Exception {
        url = args[0];
        user = args[1];
        password = args[2];
        for (int i = 3; i < args.length; i++) {
            String spec = args[i];
            String name = spec.contains("=") ? spec.substring(0, spec.indexOf('=')) : spec;
            String dest = spec.contains("=") ? spec.substring(spec.indexOf('=') + 1) : "q." + spec;
            try {
                JmsChecks.class.getDeclaredMethod(name, String.class).invoke(null, dest);
                System.out.println("OK " + name);
            } catch (java.lang.reflect.InvocationTargetException e) {
                Throwable cause = e.getCause();
                System.out.println("FAIL " + name + ": " + cause);
                cause.printStackTrace();
            }
            System.out.flush();
        }
    }
}
