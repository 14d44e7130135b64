# Sourced by /etc/profile for login shells (linked as /etc/profile.d/basalt-motd.sh):
# the banner of an interactive login, as CoreOS printed its motd and failed units.
case $- in
    *i*) [ -x /usr/lib/basalt/libexec/basalt-motd ] && /usr/lib/basalt/libexec/basalt-motd ;;
esac
