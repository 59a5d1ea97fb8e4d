"""MQTT: the topic layout, the paho client (the only module that imports paho) and Home Assistant discovery."""
