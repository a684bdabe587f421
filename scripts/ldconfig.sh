#!/bin/sh
# Run by `meson install` (meson.build's add_install_script, skipped under DESTDIR): what a
# Debian package's postinst does for a shared library. After installing into a directory
# the dynamic loader searches (/usr/local/lib/x86_64-linux-gnu on Debian), its cache
# must be refreshed, or programs fail with "libweft.so.0: cannot open shared object
# file" until someone runs ldconfig. Only root can; others get the command to run.
libdir=$1
case ":$(ldconfig -v -N -X 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p' | tr '\n' ':')" in
  *":$libdir:"*) searched=1 ;;
  *) searched=0 ;;
esac
if [ "$searched" = 1 ] && [ "$(id -u)" = 0 ]; then
  ldconfig && echo "weft: ran ldconfig for $libdir"
elif [ "$searched" = 1 ]; then
  echo "weft: run 'sudo ldconfig' so that programs find libweft.so.0 in $libdir"
else
  echo "weft: $libdir is not in the loader's search path: run programs with LD_LIBRARY_PATH=$libdir" \
       "(or add it to /etc/ld.so.conf.d/ and run ldconfig)"
fi
